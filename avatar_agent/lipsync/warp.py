"""Landmark-driven image warps: open the mouth (lips + jaw) and close the eyelids.

Everything is computed in face-aligned coordinates (u along the eye line, v downwards,
origin at the mouth centre) so tilted heads work, over a small region of interest only.
Each warp is a backward map built from exact piecewise-linear inverses of a forward
displacement, added to the identity pixel grid: where the displacement is zero the
output pixel *is* the source pixel, so everything outside the moving region stays
bit-identical to the photo.

Mouth model (per column u, with ``A(u)`` a cos² window over the mouth width):
the upper lip rises by ``U = open·UP·iod·A`` fading to zero at the nose base; the lower
lip and chin drop by ``D = open·DOWN·iod·A`` down to the chin, fading to zero over
``NECK·iod`` below it; sideways, pursed lips (``rounding``) narrow the mouth and part over
a narrower span (a round opening), spread lips (``wide``) draw the corners out; between
the lips a synthesized mouth interior with depth (cavity shaded towards the throat and the
corners, tongue, upper teeth, a hint of lower teeth; ``bite``: the upper teeth fill the
gap, as for "f"/"v") fills the gap.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..face.analyzer import (
    CHIN,
    LEFT_BROW,
    LEFT_EYE_CENTRE,
    LEFT_EYE_LIDS,
    LOWER_INNER,
    MOUTH_CORNERS,
    NOSE_BOTTOM,
    RIGHT_BROW,
    RIGHT_EYE_CENTRE,
    RIGHT_EYE_LIDS,
    UPPER_INNER,
    FaceLandmarks,
)

UP = 0.08  # upper-lip lift at full opening, × inter-ocular distance
DOWN = 0.22  # lower-lip drop at full opening, × inter-ocular distance
JAW = 0.16  # chin drop at full opening, × inter-ocular distance
NECK = 0.5  # below the chin the drop fades out over this × inter-ocular distance
WIDTH = 1.8  # jaw window half-width, × mouth half-width
BLINK_SPAN = 0.5  # share of the brow-to-upper-lid distance that moves in a blink
CAVITY_BGR = np.array([48, 42, 78], np.float32)
THROAT_BGR = np.array([20, 16, 32], np.float32)
TEETH_BGR = np.array([188, 198, 208], np.float32)
TONGUE_BGR = np.array([92, 96, 176], np.float32)
ROUND_SQUEEZE = 0.30  # pursed lips: the mouth narrows by up to this share near the seam
WIDE_STRETCH = 0.28  # spread lips ("ee"): the corners move out by up to this share


@dataclass
class _Region:
    """A pixel rectangle [y0:y1, x0:x1] with its face-aligned coordinates."""

    y0: int
    y1: int
    x0: int
    x1: int
    gx: np.ndarray  # (h, w) float32 pixel x
    gy: np.ndarray  # (h, w) float32 pixel y
    u: np.ndarray  # (h, w) face-aligned coordinates relative to the region's origin
    v: np.ndarray


def _region(image_shape: tuple[int, ...], origin: np.ndarray, ex: np.ndarray, ey: np.ndarray,
            u_range: tuple[float, float], v_range: tuple[float, float]) -> _Region:
    corners = np.array([origin + a * ex + b * ey for a in u_range for b in v_range])
    h, w = image_shape[:2]
    x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int) - 1, 0)
    x1, y1 = np.minimum(np.ceil(corners.max(0)).astype(int) + 2, [w, h])
    gy, gx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dx, dy = gx - origin[0], gy - origin[1]
    return _Region(int(y0), int(y1), int(x0), int(x1), gx, gy,
                   (dx * ex[0] + dy * ex[1]).astype(np.float32),
                   (dx * ey[0] + dy * ey[1]).astype(np.float32))


def _window(x: np.ndarray, half: float) -> np.ndarray:
    """cos² bump: 1 at 0, 0 beyond ±half."""
    t = np.clip(np.abs(x) / max(half, 1e-6), 0.0, 1.0)
    return (np.cos(t * np.pi / 2) ** 2).astype(np.float32)


class FaceWarp:
    """Mouth and eyelid warps of one portrait, prepared once from its landmarks."""

    def __init__(self, image: np.ndarray, face: FaceLandmarks) -> None:
        self.image = image
        self.face = face
        iod = face.inter_ocular
        self.iod = iod
        roll = face.roll
        self.ex = np.array([np.cos(roll), np.sin(roll)], np.float32)
        self.ey = np.array([-np.sin(roll), np.cos(roll)], np.float32)
        pts = face.points[:, :2].astype(np.float32)
        self.centre = pts[[13, 14]].mean(0)

        def local(idx):
            d = pts[list(idx) if isinstance(idx, tuple) else idx] - self.centre
            return d @ np.stack([self.ex, self.ey], 1)

        corners = local(MOUTH_CORNERS)
        self.half_width = float(abs(corners[1, 0] - corners[0, 0]) / 2)
        upper, lower = local(UPPER_INNER), local(LOWER_INNER)
        v_nose = float(local(NOSE_BOTTOM)[1])
        v_chin = float(local(CHIN)[1])
        span = WIDTH * self.half_width
        neck = NECK * iod
        self.m = _region(image.shape, self.centre, self.ex, self.ey, (-span, span), (v_nose, v_chin + neck))
        u = self.m.u
        # seam between the lips, per column: the mean of the inner-lip contours
        order_u = np.argsort(upper[:, 0])
        up_v = np.interp(u, upper[order_u, 0], upper[order_u, 1])
        order_l = np.argsort(lower[:, 0])
        lo_v = np.interp(u, lower[order_l, 0], lower[order_l, 1])
        self.seam = ((up_v + lo_v) / 2).astype(np.float32)
        self.window = _window(u, span)
        self.inner = _window(u, self.half_width * 1.05)
        self.inner_round = _window(u, self.half_width * 0.62)
        self.v_nose, self.v_chin, self.neck = v_nose, v_chin, neck
        self.h_up = np.maximum(self.seam - v_nose, 1.0)
        self.eyes = [self._eye(pts, c, lids, brow) for c, lids, brow in
                     ((RIGHT_EYE_CENTRE, RIGHT_EYE_LIDS, RIGHT_BROW),
                      (LEFT_EYE_CENTRE, LEFT_EYE_LIDS, LEFT_BROW))]

    # ------------------------------------------------------------------ mouth
    def mouth(self, frame: np.ndarray, openness: float, rounding: float = 0.0,
              teeth: bool = True, wide: float = 0.0, bite: float = 0.0) -> np.ndarray:
        """Write the mouth into ``frame`` (in place) and return it: ``openness`` 0..~1 (jaw
        and lips apart), ``rounding`` 0..1 (lips pursed: narrower, a rounder opening),
        ``wide`` 0..1 (corners drawn out, as for "ee"), ``bite`` 0..1 (lower lip up against
        the upper teeth, as for "f"/"v": the teeth fill the gap)."""
        if openness <= 0.0 and rounding <= 0.0 and wide <= 0.0:
            return frame
        r = self.m
        u, v, s = r.u, r.v, self.seam
        # the lips part only between the corners (inner window); the jaw drops more widely.
        # Pursed lips part over a narrower span: a round opening instead of a slot
        inner = self.inner
        if rounding > 0.0:
            inner = inner + (self.inner_round - inner) * min(rounding, 1.0)
        big_u = openness * UP * self.iod * inner
        d_lip = openness * DOWN * self.iod * inner
        d_jaw = openness * JAW * self.iod * self.window
        top, bottom = s - big_u, s + d_lip
        vs = v.copy()
        # above the seam: [nose, seam] is squeezed up by U (exact inverse of the linear map)
        upper = (v < top) & (v >= self.v_nose)
        k = big_u / self.h_up
        vs_up = (v - big_u * (s - self.h_up) / self.h_up) / np.maximum(1.0 - k, 1e-3)
        vs = np.where(upper, vs_up, vs)
        # below the seam: the drop goes linearly from d_lip at the seam to d_jaw at the chin,
        # then fades to zero over the neck (exact inverses of both linear pieces)
        chin = self.v_chin
        slope = (d_jaw - d_lip) / np.maximum(chin - s, 1.0)
        vs_jaw = (v - d_lip + slope * s) / (1.0 + slope)
        vs_neck = (v - d_jaw - d_jaw * chin / self.neck) / np.maximum(1.0 - d_jaw / self.neck, 1e-3)
        jaw = (v > bottom) & (v <= chin + d_jaw)
        neck = (v > chin + d_jaw) & (v <= chin + self.neck)
        vs = np.where(jaw, vs_jaw, np.where(neck, vs_neck, vs))
        # rounded lips and wide opening both narrow the mouth; spread lips ("ee") widen it
        squeeze = (ROUND_SQUEEZE * rounding + 0.06 * openness - WIDE_STRETCH * wide) * self.lips_v(v - s)
        us = u * (1.0 + squeeze * self.window)
        du, dv = us - u, vs - v
        map_x = r.gx + du * self.ex[0] + dv * self.ey[0]
        map_y = r.gy + du * self.ex[1] + dv * self.ey[1]
        roi = cv2.remap(self.image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        gap = big_u + d_lip
        if gap.max() > 0.5:
            roi = self._interior(roi, v - top, bottom - v, gap, teeth, bite)
        frame[r.y0:r.y1, r.x0:r.x1] = roi
        return frame

    def lips_v(self, dv: np.ndarray) -> np.ndarray:
        """Vertical reach of the lips' sideways motion around the seam (cos², ±0.45 iod)."""
        return _window(dv, 0.45 * self.iod)

    def _interior(self, roi: np.ndarray, from_top: np.ndarray, to_bottom: np.ndarray,
                  gap: np.ndarray, teeth: bool, bite: float = 0.0) -> np.ndarray:
        # work on the bounding box of the open gap only (a few % of the region): 5× faster
        open_px = (np.minimum(from_top, to_bottom) > -0.5) & (gap > 0.5)
        rows, cols = np.nonzero(open_px.any(axis=1))[0], np.nonzero(open_px.any(axis=0))[0]
        if not len(rows):
            return roi
        box = np.s_[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        roi[box] = self._paint(roi[box], from_top[box], to_bottom[box], gap[box], self.inner[box], teeth, bite)
        return roi

    def _paint(self, roi: np.ndarray, from_top: np.ndarray, to_bottom: np.ndarray,
               gap: np.ndarray, inner: np.ndarray, teeth: bool, bite: float = 0.0) -> np.ndarray:
        # soft edges (about 1 % of the inter-ocular distance) so the cavity sits *in* the lips
        # instead of looking cut out; it also fades in where the gap is a slit (the corners)
        soft = max(1.0, 0.012 * self.iod)
        alpha = np.clip((np.minimum(from_top, to_bottom) + 0.5) / soft, 0.0, 1.0)
        alpha *= np.clip(gap / (0.03 * self.iod), 0.0, 1.0)
        alpha = np.where(gap > 0.5, alpha, 0.0).astype(np.float32)
        depth = np.clip(from_top / np.maximum(gap, 1e-3), 0, 1)
        shade = (np.abs(depth - 0.55) * 1.6).clip(0, 1)[..., None]
        colour = THROAT_BGR + (CAVITY_BGR - THROAT_BGR) * shade
        # depth: the cavity recedes into shadow towards the corners and the throat; the
        # tongue's back rises from the floor of a well-open mouth, lit from the front
        open_well = np.clip((gap - 0.06 * self.iod) / (0.08 * self.iod), 0, 1)
        tongue = np.clip((depth - 0.62) / 0.2, 0, 1) * np.clip((inner - 0.35) * 2.5, 0, 1) * open_well
        colour = colour + (TONGUE_BGR * (0.55 + 0.35 * depth[..., None]) - colour) * (0.85 * tongue[..., None])
        colour = colour * (0.55 + 0.45 * np.clip(inner * 1.4, 0, 1))[..., None]
        if teeth:
            # "f"/"v": the lower lip rests against the upper teeth, which fill the gap
            tooth_h = np.minimum(np.maximum(0.32, 0.85 * bite) * gap, (0.075 + 0.05 * bite) * self.iod)
            # upper teeth under the upper lip, shaded towards the corners and their lower edge
            upper_t = np.clip((tooth_h - from_top) / soft, 0, 1) * np.clip((inner - 0.25) * 4, 0, 1)
            fade = np.clip(1.0 - from_top / np.maximum(tooth_h, 1e-3), 0, 1) * 0.25
            tint = (0.62 + 0.3 * inner + fade)[..., None]
            colour = colour + (TEETH_BGR * tint - colour) * upper_t[..., None]
            # a hint of the lower teeth, dimmer (in shadow), only when the mouth is well open
            lower_t = (np.clip((0.3 * tooth_h - to_bottom) / soft, 0, 1) * np.clip((inner - 0.6) * 4, 0, 1)
                       * np.clip((gap - 0.12 * self.iod) / (0.04 * self.iod), 0, 1))
            colour = colour + (TEETH_BGR * 0.72 - colour) * lower_t[..., None]
        out = roi.astype(np.float32) * (1 - alpha[..., None]) + colour * alpha[..., None]
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)

    # ------------------------------------------------------------------ eyes
    def _eye(self, pts: np.ndarray, corners: tuple[int, int], lids: tuple[int, int], brow: int):
        centre = pts[list(corners)].mean(0)
        basis = np.stack([self.ex, self.ey], 1)
        half = float(abs(((pts[corners[1]] - pts[corners[0]]) @ basis)[0]) / 2)
        v_up, v_low = ((pts[list(lids)] - centre) @ basis)[:, 1]
        v_brow = float(((pts[brow] - centre) @ basis)[1])
        # the lid slides down over the lower half of the brow-to-lid span only: the brow and
        # what sits near it (a glasses rim) stay put
        v_brow = float(v_up) - BLINK_SPAN * (float(v_up) - v_brow)
        reg = _region(self.image.shape, centre, self.ex, self.ey, (-1.15 * half, 1.15 * half),
                      (v_brow, float(v_low) + 0.15 * self.iod))
        return reg, _window(reg.u, 1.15 * half), float(v_up), float(v_low), v_brow

    def blink(self, frame: np.ndarray, amount: float) -> np.ndarray:
        """Lower both upper eyelids by ``amount`` (0 open .. 1 closed), in place."""
        if amount <= 0.0:
            return frame
        for reg, win, v_up, v_low, v_brow in self.eyes:
            drop = amount * max(v_low - v_up, 0.0) * win
            v = reg.v
            cover = (v >= v_brow) & (v <= v_up + drop)
            vs = v_brow + (v - v_brow) * (v_up - v_brow) / np.maximum(v_up + drop - v_brow, 1e-3)
            dv = np.where(cover, vs - v, 0.0).astype(np.float32)
            map_x = reg.gx + dv * self.ey[0]
            map_y = reg.gy + dv * self.ey[1]
            frame[reg.y0:reg.y1, reg.x0:reg.x1] = cv2.remap(
                self.image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return frame
