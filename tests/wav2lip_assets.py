"""Tiny but real Wav2Lip artefacts for the tests (no released weights can be had here).

A randomly initialised network of the true architecture (BatchNorm statistics randomised
too, so every layer matters), saved as the original checkpoints are (``state_dict`` with
``module.`` prefixes), converted once per test process through the real converter.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import numpy as np

_DIR = Path(tempfile.mkdtemp(prefix="wav2lip-test-"))
atexit.register(shutil.rmtree, _DIR, ignore_errors=True)   # ~0.5 GB of IRs per test run


def random_state_dict(seed: int = 0) -> dict:
    """State dict of a random Wav2Lip with randomised BatchNorm statistics."""
    import torch

    from avatar_agent.lipsync.wav2lip_net import Wav2Lip

    torch.manual_seed(seed)
    model = Wav2Lip()
    g = torch.Generator().manual_seed(seed)
    state = model.state_dict()
    for key, value in state.items():
        if key.endswith("running_mean"):
            value.copy_(torch.randn(value.shape, generator=g) * 0.1)
        elif key.endswith("running_var"):
            value.copy_(torch.rand(value.shape, generator=g) * 0.5 + 0.75)
        elif key.endswith("conv_block.1.weight"):
            value.copy_(torch.rand(value.shape, generator=g) * 0.5 + 0.75)
    return state


def save_checkpoint(state: dict, name: str, prefix: str = "module.") -> Path:
    """Save ``state`` like the released checkpoints: ``{"state_dict": {prefix + key: ...}}``."""
    import torch

    path = _DIR / name
    torch.save({"state_dict": {prefix + k: v for k, v in state.items()}, "global_step": 1}, path)
    return path


@functools.lru_cache(maxsize=4)
def random_ir(fp16: bool = False) -> Path:
    """The random network as ``.pth`` -> OpenVINO IR through :func:`convert_wav2lip`."""
    from avatar_agent.lipsync.convert import convert_wav2lip

    pth = save_checkpoint(random_state_dict(), "random.pth")
    return convert_wav2lip(pth, _DIR / ("random16.xml" if fp16 else "random.xml"), fp16=fp16)


def logit(p: np.ndarray) -> np.ndarray:
    """Inverse sigmoid."""
    return np.log(p / (1 - p))


@functools.lru_cache(maxsize=2)
def colour_ir(bgr: tuple[float, float, float] = (0.1, 0.5, 0.9)) -> Path:
    """True architecture whose output is the constant colour ``bgr`` (0..1 in B, G, R).

    The last 1x1 conv has zero weights and bias ``logit(colour)``: the network's output
    channel order is known, so a BGR/RGB swap anywhere downstream shows in the pixels.
    """
    import torch

    from avatar_agent.lipsync.convert import convert_wav2lip

    state = random_state_dict(1)
    state["output_block.1.weight"].zero_()
    state["output_block.1.bias"].copy_(torch.tensor(logit(np.array(bgr)), dtype=torch.float32))
    pth = save_checkpoint(state, "colour.pth")
    return convert_wav2lip(pth, _DIR / "colour.xml")


@functools.lru_cache(maxsize=2)
def probe_ir(channels: str = "masked") -> Path:
    """A fake network (not Wav2Lip) with the IR's port names that echoes part of its face input.

    ``masked``: returns channels 0..2 (the copy whose lower half must be zeroed);
    ``reference``: returns channels 3..5 (the unmasked crop). Used to see exactly what
    the engine feeds the network and where the result lands.
    """
    import openvino as ov
    import openvino.opset13 as ops

    mel = ops.parameter(ov.PartialShape([-1, 1, 80, 16]), np.float32, name="mel")
    face = ops.parameter(ov.PartialShape([-1, 6, 96, 96]), np.float32, name="face")
    start = 0 if channels == "masked" else 3
    part = ops.slice(face, np.array([start]), np.array([start + 3]), np.array([1]), np.array([1]))
    # keep the mel input alive (multiplied by zero) so the ports match the real IR
    zero = ops.multiply(ops.reduce_sum(mel, np.array([1, 2, 3]), keep_dims=True), np.float32(0.0))
    out = ops.add(part, zero)
    out.output(0).get_tensor().set_names({"frames"})
    model = ov.Model([out], [mel, face], "probe")
    mel.output(0).get_tensor().set_names({"mel"})
    face.output(0).get_tensor().set_names({"face"})
    path = _DIR / f"probe-{channels}.xml"
    ov.save_model(model, str(path), compress_to_fp16=False)
    return path
