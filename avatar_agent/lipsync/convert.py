"""``avatar-agent models convert-wav2lip PATH.pth``: a Wav2Lip checkpoint -> OpenVINO IR.

Needs torch (extra ``convert``) only here; the engine runs the IR with OpenVINO alone.
The IR has named inputs ``mel`` ``(B,1,80,16)`` and ``face`` ``(B,6,96,96)``, output
``frames`` ``(B,3,96,96)``, with a dynamic batch. Written atomically (temp files renamed
into place), so an interrupted conversion never leaves an IR that later loads.
"""

from __future__ import annotations

import logging
import os
import pickle
import warnings
from pathlib import Path

from ..errors import InputError, MissingExtraError
from ..models import home

log = logging.getLogger(__name__)

INPUTS = (("mel", (1, 80, 16)), ("face", (6, 96, 96)))
OUTPUT = "frames"


def default_output() -> Path:
    """Where the engine looks by default: ``wav2lip.xml`` in the model store root."""
    return home() / "wav2lip.xml"


def _load_checkpoint(torch, pth: Path) -> dict:
    """Read a ``.pth`` without executing pickled code; one-line errors for bad files."""
    if not pth.is_file():
        raise InputError(f"checkpoint not found: {pth}", hint="give the path of wav2lip.pth or wav2lip_gan.pth")
    try:
        ckpt = torch.load(str(pth), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        detail = " ".join(str(exc).split())[:120]
        raise InputError(f"cannot read checkpoint {pth}: {detail}",
                         hint="expected a PyTorch Wav2Lip checkpoint (.pth)") from None
    if not isinstance(ckpt, dict):
        raise InputError(f"{pth} is not a state-dict checkpoint", hint="expected wav2lip.pth or wav2lip_gan.pth")
    return ckpt


def build_model(torch, ckpt: dict, source: Path):
    """The Wav2Lip generator with the checkpoint's weights, in eval mode."""
    from .wav2lip_net import Wav2Lip, load_state

    model = Wav2Lip()
    try:
        load_state(model, ckpt)
    except (RuntimeError, AttributeError) as exc:
        first = " ".join(str(exc).split())[:160]
        raise InputError(f"{source} is not a Wav2Lip (96x96 generator) checkpoint: {first}",
                         hint="use wav2lip.pth or wav2lip_gan.pth, not the SyncNet/discriminator") from None
    return model.eval()


def to_openvino(model):
    """Trace ``model`` and return the ``openvino.Model`` with named, batch-dynamic ports."""
    import openvino as ov
    import torch

    example = tuple(torch.zeros((2, *shape)) for _, shape in INPUTS)
    # convert_model traces with torch.jit, which torch 2.13 flags as deprecated
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ov_model = ov.convert_model(model, example_input=example,
                                    input=[ov.PartialShape([-1, *shape]) for _, shape in INPUTS])
    for port, (name, _) in zip(ov_model.inputs, INPUTS, strict=True):
        port.get_tensor().set_names({name})
    ov_model.outputs[0].get_tensor().set_names({OUTPUT})
    return ov_model


def save_atomic(ov_model, out_xml: Path, fp16: bool) -> Path:
    """Save an IR via temp files renamed into place (``.bin`` first, ``.xml`` last)."""
    import openvino as ov

    out_xml.parent.mkdir(parents=True, exist_ok=True)
    tmp_xml = out_xml.with_name(f".{out_xml.stem}.{os.getpid()}.partial.xml")
    try:
        ov.save_model(ov_model, str(tmp_xml), compress_to_fp16=fp16)
        os.replace(tmp_xml.with_suffix(".bin"), out_xml.with_suffix(".bin"))
        os.replace(tmp_xml, out_xml)   # the .xml last: it is what the engine looks for
    finally:
        for p in (tmp_xml, tmp_xml.with_suffix(".bin")):
            p.unlink(missing_ok=True)
    return out_xml


def convert_wav2lip(pth: Path, out_xml: Path | None = None, fp16: bool = False) -> Path:
    """Convert ``pth`` (Wav2Lip generator weights) to an OpenVINO IR; returns the ``.xml`` path.

    ``fp16`` stores the weights in half precision (half the file; the CPU computes in
    f32 or bf16 either way). Default output: :func:`default_output`.
    """
    try:
        import torch
    except ImportError:
        raise MissingExtraError("the Wav2Lip converter", "convert", "torch") from None

    pth = Path(pth)
    out_xml = Path(out_xml) if out_xml is not None else default_output()
    if out_xml.suffix != ".xml":
        raise InputError(f"output must be an OpenVINO .xml path, got {out_xml}",
                         hint=f"e.g. --output {default_output()}")
    model = build_model(torch, _load_checkpoint(torch, pth), pth)
    ov_model = to_openvino(model)
    save_atomic(ov_model, out_xml, fp16)
    log.info("wav2lip IR written", extra={"path": str(out_xml), "fp16": fp16})
    return out_xml


def quantize_int8(xml: Path, out_xml: Path, mels, faces, subset_size: int = 64) -> Path:
    """Post-training INT8 quantization (NNCF) of a Wav2Lip IR; returns ``out_xml``.

    ``mels`` ``(N,1,80,16)`` and ``faces`` ``(N,6,96,96)`` float32 are calibration inputs
    as the engine feeds them (speech mel windows, the masked/reference face input). The
    CPU runs INT8 convolutions with VNNI; check the result against the FP32 IR on real
    faces before trusting it (quantization error shows as a grainy mouth).
    """
    try:
        import nncf
    except ImportError:
        raise MissingExtraError("INT8 quantization", "convert", "nncf") from None
    import openvino as ov

    model = ov.Core().read_model(str(xml))
    items = [{"mel": mels[i:i + 1], "face": faces[i:i + 1]} for i in range(len(mels))]
    quantized = nncf.quantize(model, nncf.Dataset(items), subset_size=min(subset_size, len(items)),
                              fast_bias_correction=True)
    return save_atomic(quantized, Path(out_xml), fp16=False)


def calibration_inputs(image_bgr, box: tuple[int, int, int, int], pcm16k, fps: float = 25.0):
    """INT8 calibration inputs as the engine builds them: ``(N,1,80,16)`` mels, ``(N,6,96,96)`` faces.

    ``image_bgr`` is the avatar photo, ``box`` its padded face box (x1, y1, x2, y2), and
    ``pcm16k`` some speech at 16 kHz (a few seconds covering varied sounds).
    """
    import numpy as np

    from . import mel as melfe
    from .wav2lip import face_input

    spec = melfe.melspectrogram(pcm16k)
    n = round(len(pcm16k) * fps / melfe.SAMPLE_RATE)
    mels = melfe.mel_windows(spec, melfe.window_starts(0, n, fps, spec.shape[1]))
    x1, y1, x2, y2 = box
    face = face_input(image_bgr[y1:y2, x1:x2])
    return mels, np.repeat(face[None], len(mels), axis=0)
