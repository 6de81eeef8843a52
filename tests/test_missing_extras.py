"""Every place that needs an optional extra says so in one line (exit 6) when it is absent.

An install without an extra is simulated by hiding the extra's modules from the import
system (``sys.modules[name] = None``: ``import name`` then fails as if it were not
installed); the rest of the program is the real one, run through the real CLI where a
command reaches the raise site. Issue 18: ``serve`` after ``make demo`` crashed with
``TypeError: MissingExtraError.__init__() got an unexpected keyword argument 'hint'``.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from avatar_agent.errors import MissingExtraError

from .test_cli_errors import FACE, QUESTION, ROOT, assert_one_line_error

EXTRA = 6


def run_without(hidden: list[str], *args: str) -> subprocess.CompletedProcess:
    """``avatar-agent ARGS`` through the real entry point with ``hidden`` not importable."""
    boot = ("import sys\n"
            f"for name in {hidden!r}: sys.modules[name] = None\n"
            f"sys.argv = ['avatar-agent', *{list(args)!r}]\n"
            "from avatar_agent.entry import run\nrun()\n")
    return subprocess.run([sys.executable, "-c", boot], cwd=ROOT, env=os.environ.copy(),
                          capture_output=True, text=True, timeout=300, check=False)


def _needles(extra: str) -> tuple[str, str]:
    return f"optional extra '{extra}'", f"pip install 'avatar-agent[{extra}]'"


@pytest.mark.parametrize("hidden", ["aiortc", "aiohttp"])
def test_serve_without_the_serve_extra(hidden, tmp_path):
    proc = run_without([hidden], "serve", "--port", "0", "--set", f"transcript.path={tmp_path / 't.jsonl'}")
    line = assert_one_line_error(proc, EXTRA, "serve", *_needles("serve"))
    assert f"({hidden} not importable)" in line


@pytest.mark.parametrize(("provider", "hidden", "extra"), [
    ("stt.provider=faster_whisper", ["faster_whisper", "ctranslate2"], "local"),  # registry
    ("stt.provider=whisper", ["whisper"], "whisper"),                            # WhisperSTT
    ("stt.provider=moonshine", ["moonshine_voice"], "local"),
    ("llm.provider=llama_cpp", ["llama_cpp"], "local"),
])
def test_reply_with_a_provider_whose_extra_is_missing(provider, hidden, extra, tmp_path):
    proc = run_without(hidden, "reply", "--input", str(QUESTION), "--image", str(FACE),
                       "-o", str(tmp_path / "r.mp4"), "--set", provider)
    assert_one_line_error(proc, EXTRA, *_needles(extra))
    assert not (tmp_path / "r.mp4").exists()


@pytest.mark.parametrize(("provider", "hidden", "extra"), [
    ("tts.provider=coqui", ["TTS"], "coqui"),
    ("tts.provider=piper", ["piper"], "local"),
])
def test_say_with_a_provider_whose_extra_is_missing(provider, hidden, extra, tmp_path):
    args = ["say", "Hello there", "--image", str(FACE), "-o", str(tmp_path / "s.mp4"), "--set", provider]
    if provider.startswith("tts.provider=coqui"):
        (tmp_path / "m.pth").write_bytes(b"x")
        args += ["--set", f"tts.coqui.model_path={tmp_path / 'm.pth'}"]
    proc = run_without(hidden, *args)
    assert_one_line_error(proc, EXTRA, *_needles(extra))


def test_convert_wav2lip_without_torch(tmp_path):
    pth = tmp_path / "wav2lip.pth"
    pth.write_bytes(b"not read")
    proc = run_without(["torch"], "models", "convert-wav2lip", str(pth), "--output", str(tmp_path / "w.xml"))
    assert_one_line_error(proc, EXTRA, "Wav2Lip converter", *_needles("convert"))


@pytest.mark.parametrize("hidden", ["torch", "onnx"])
def test_train_visemes_without_its_packages(hidden, tmp_path):
    proc = run_without([hidden], "train-visemes", "--out", str(tmp_path / "v.onnx"), "--minutes", "0.1")
    line = assert_one_line_error(proc, EXTRA, "train-visemes", *_needles("convert"))
    assert f"({hidden} not importable)" in line


def test_int8_quantization_without_nncf(monkeypatch, tmp_path):
    from avatar_agent.lipsync.convert import quantize_int8

    monkeypatch.setitem(sys.modules, "nncf", None)
    with pytest.raises(MissingExtraError) as err:
        quantize_int8(tmp_path / "w.xml", tmp_path / "w8.xml", None, None)
    assert err.value.exit_code == EXTRA
    assert all(n in str(err.value) for n in ("INT8 quantization", *_needles("convert")))


def test_smart_turn_without_onnxruntime(monkeypatch, tmp_path):
    from avatar_agent.audio.turn_end import SmartTurn

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingExtraError) as err:
        SmartTurn(tmp_path / "smart-turn.onnx").load()
    assert all(n in str(err.value) for n in ("smart_turn", *_needles("local")))


def test_write_onnx_without_onnx(monkeypatch, tmp_path):
    import numpy as np

    from avatar_agent.train.visemes import write_onnx

    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(MissingExtraError) as err:
        write_onnx([], np.zeros(1), np.ones(1), tmp_path / "v.onnx")
    assert all(n in str(err.value) for n in ("train-visemes", *_needles("convert")))
