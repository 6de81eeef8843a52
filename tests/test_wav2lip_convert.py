"""Wav2Lip architecture and converter: original key names load strictly; IR == torch."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from avatar_agent.cli import main  # noqa: E402
from avatar_agent.errors import InputError  # noqa: E402
from avatar_agent.lipsync.convert import build_model  # noqa: E402
from avatar_agent.lipsync.wav2lip_net import Wav2Lip, load_state  # noqa: E402

from .wav2lip_assets import random_ir, random_state_dict, save_checkpoint  # noqa: E402

# The original generator, layer by layer, as listed in Rudrabha/Wav2Lip models/wav2lip.py:
# (module prefix, cin, cout, kernel, transposed). Written out by hand from that file,
# independently of our module, so a wrong shape or name in ours fails here.
_ENC = [[(6, 16, 7)],
        [(16, 32, 3), (32, 32, 3), (32, 32, 3)],
        [(32, 64, 3), (64, 64, 3), (64, 64, 3), (64, 64, 3)],
        [(64, 128, 3), (128, 128, 3), (128, 128, 3)],
        [(128, 256, 3), (256, 256, 3), (256, 256, 3)],
        [(256, 512, 3), (512, 512, 3)],
        [(512, 512, 3), (512, 512, 1)]]
_AUDIO = [(1, 32, 3), (32, 32, 3), (32, 32, 3), (32, 64, 3), (64, 64, 3), (64, 64, 3),
          (64, 128, 3), (128, 128, 3), (128, 128, 3), (128, 256, 3), (256, 256, 3),
          (256, 512, 3), (512, 512, 1)]
_DEC = [[(512, 512, 1, False)],
        [(1024, 512, 3, True), (512, 512, 3, False)],
        [(1024, 512, 3, True), (512, 512, 3, False), (512, 512, 3, False)],
        [(768, 384, 3, True), (384, 384, 3, False), (384, 384, 3, False)],
        [(512, 256, 3, True), (256, 256, 3, False), (256, 256, 3, False)],
        [(320, 128, 3, True), (128, 128, 3, False), (128, 128, 3, False)],
        [(160, 64, 3, True), (64, 64, 3, False), (64, 64, 3, False)]]


def original_layers() -> list[tuple[str, int, int, int, bool]]:
    """Every conv block of the original generator: (prefix, cin, cout, k, transposed)."""
    layers = []
    for b, block in enumerate(_ENC):
        layers += [(f"face_encoder_blocks.{b}.{i}", ci, co, k, False) for i, (ci, co, k) in enumerate(block)]
    layers += [(f"audio_encoder.{i}", ci, co, k, False) for i, (ci, co, k) in enumerate(_AUDIO)]
    for b, block in enumerate(_DEC):
        layers += [(f"face_decoder_blocks.{b}.{i}", ci, co, k, t) for i, (ci, co, k, t) in enumerate(block)]
    layers.append(("output_block.0", 80, 32, 3, False))
    return layers


def synthetic_original_state(prefix: str = "") -> dict:
    """A state dict with the original key names and shapes (random values)."""
    g = torch.Generator().manual_seed(3)
    state = {}
    for name, cin, cout, k, transposed in original_layers():
        shape = (cin, cout, k, k) if transposed else (cout, cin, k, k)
        state[f"{name}.conv_block.0.weight"] = torch.randn(shape, generator=g) * 0.01
        state[f"{name}.conv_block.0.bias"] = torch.zeros(cout)
        for stat in ("weight", "bias", "running_mean", "running_var"):
            state[f"{name}.conv_block.1.{stat}"] = torch.rand(cout, generator=g)
        state[f"{name}.conv_block.1.num_batches_tracked"] = torch.tensor(1000)
    state["output_block.1.weight"] = torch.randn(3, 32, 1, 1, generator=g)
    state["output_block.1.bias"] = torch.zeros(3)
    return {prefix + k: v for k, v in state.items()}


def test_parameter_count_is_wav2lips():
    n = sum(p.numel() for p in Wav2Lip().parameters())
    assert abs(n / 1e6 - 36.3) < 0.05


@pytest.mark.parametrize("prefix", ["", "module."])
def test_original_key_names_load_strictly(prefix):
    state = synthetic_original_state(prefix)
    model = Wav2Lip()
    load_state(model, {"state_dict": state, "optimizer": {}, "global_step": 1, "global_epoch": 1})
    key = "face_decoder_blocks.3.0.conv_block.0.weight"
    assert torch.equal(model.state_dict()[key], state[prefix + key])
    assert len(model.state_dict()) == len(state)


def test_wrong_checkpoint_is_one_line_input_error(tmp_path):
    state = synthetic_original_state("module.")
    del state["module.output_block.1.bias"]
    with pytest.raises(InputError) as err:
        build_model(torch, {"state_dict": state}, tmp_path / "x.pth")
    assert "not a Wav2Lip" in str(err.value) and "\n" not in str(err.value)


def test_missing_checkpoint_is_one_line_error(tmp_path, capsys):
    rc = main(["models", "convert-wav2lip", str(tmp_path / "nope.pth"), "--output", str(tmp_path / "w.xml")])
    err = capsys.readouterr().err
    assert rc != 0 and "checkpoint not found" in err and err.count("\n") == 1
    assert not (tmp_path / "w.xml").exists()


def _inputs(batch: int, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mel = rng.uniform(-4, 4, (batch, 1, 80, 16)).astype(np.float32)
    face = rng.uniform(0, 1, (batch, 6, 96, 96)).astype(np.float32)
    face[:, :3, 48:] = 0
    return mel, face


def _torch_out(mel: np.ndarray, face: np.ndarray) -> np.ndarray:
    model = Wav2Lip().eval()
    model.load_state_dict(random_state_dict())
    with torch.no_grad():
        return model(torch.from_numpy(mel), torch.from_numpy(face)).numpy()


@pytest.mark.parametrize(("fp16", "tol"), [(False, 1e-4), (True, 2e-2)])
def test_ir_matches_torch(fp16, tol):
    import openvino as ov

    xml = random_ir(fp16)
    assert xml.is_file() and xml.with_suffix(".bin").is_file()
    compiled = ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    assert [p.get_any_name() for p in compiled.inputs] == ["mel", "face"]
    assert compiled.outputs[0].get_any_name() == "frames"
    for batch in (1, 3):
        mel, face = _inputs(batch)
        want = _torch_out(mel, face)
        got = compiled({"mel": mel, "face": face})["frames"]
        assert got.shape == (batch, 3, 96, 96)
        assert want.std() > 0.01          # the random net is not a constant: the match means something
        np.testing.assert_allclose(got, want, atol=tol, rtol=0)
    # FP16 stores half-size weights
    size = xml.with_suffix(".bin").stat().st_size
    assert (size < 80e6) if fp16 else (size > 140e6)


def test_cli_converts_into_the_model_store(tmp_path, monkeypatch, capsys):
    """No --output: ``checkpoints/wav2lip.xml`` of the store (here AVATAR_AGENT_HOME)."""
    monkeypatch.setenv("AVATAR_AGENT_HOME", str(tmp_path))
    pth = save_checkpoint(random_state_dict(), "cli.pth", prefix="")
    assert main(["models", "convert-wav2lip", str(pth), "--fp16"]) == 0
    out = tmp_path / "wav2lip.xml"
    assert out.is_file() and out.with_suffix(".bin").stat().st_size < 80e6
    assert f"wrote {out}" in capsys.readouterr().out
    assert not list(tmp_path.glob(".*partial*"))     # temp files renamed or removed


@pytest.mark.slow
def test_int8_quantization_keeps_the_ports_and_the_picture():
    """NNCF INT8 of the random network, calibrated on engine-like inputs, stays close to FP32."""
    pytest.importorskip("nncf")
    import openvino as ov

    from avatar_agent.lipsync.convert import quantize_int8

    mel, face = _inputs(24, seed=7)
    xml = random_ir()
    q = quantize_int8(xml, xml.with_name("random-int8.xml"), mel, face, subset_size=24)
    core = ov.Core()
    ref = core.compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    got = core.compile_model(str(q), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    assert [p.get_any_name() for p in got.inputs] == ["mel", "face"]
    m, f = _inputs(4, seed=8)
    a, b = ref({"mel": m, "face": f})["frames"], got({"mel": m, "face": f})["frames"]
    assert b.shape == (4, 3, 96, 96)
    assert np.abs(a - b).mean() < 0.25 * a.std()          # error well under the picture's contrast
    assert q.with_suffix(".bin").stat().st_size < 0.4 * xml.with_suffix(".bin").stat().st_size
