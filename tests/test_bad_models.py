"""A model file that is not what it claims to be: one clear line, exit 4, no traceback."""

from __future__ import annotations

import shutil

from avatar_agent.models import ModelStore

from .test_cli_errors import assert_one_line_error, run_cli


def test_garbage_piper_voice_is_one_line(tmp_path, store):
    real = ModelStore(progress=False).path("piper-joe-medium")
    voice = tmp_path / "voice.onnx"
    voice.write_bytes(b"\x08\x07garbage, not a protobuf\xff\xfe" * 100)
    shutil.copy(f"{real}.json", f"{voice}.json")  # a valid config beside it
    out = tmp_path / "x.mp4"
    proc = run_cli("say", "Hello there", "-o", str(out), "--set", f"tts.piper.voice={voice}")
    assert_one_line_error(proc, 4, "tts.piper.voice: cannot load voice.onnx",
                          "models pull --force piper-joe-medium")
    assert not out.exists()
