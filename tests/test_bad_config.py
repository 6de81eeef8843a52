"""Config files and values a user can get wrong: one ``error:`` line, exit 2, no traceback."""

from __future__ import annotations

from .test_cli_errors import assert_one_line_error, run_cli


def test_config_that_is_a_folder(tmp_path):
    proc = run_cli("config", "show", "--config", str(tmp_path))
    assert_one_line_error(proc, 2, f"config {tmp_path} is a folder", "--config")


def test_config_that_is_binary(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_bytes(bytes(range(256)) * 4)
    proc = run_cli("config", "show", "--config", str(path))
    assert_one_line_error(proc, 2, f"{path}: not a text file")


def test_sample_rate_the_vad_cannot_take():
    proc = run_cli("config", "show", "--set", "audio.sample_rate=12345")
    assert_one_line_error(proc, 2, "audio.sample_rate", "12345")


def test_a_rate_the_vad_takes_is_accepted():
    proc = run_cli("config", "show", "--set", "audio.sample_rate=48000")
    assert proc.returncode == 0, proc.stderr
    assert "sample_rate: 48000" in proc.stdout
