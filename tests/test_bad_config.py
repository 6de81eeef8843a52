"""Config files, values and environments a user can get wrong: one ``error:`` line, a
non-zero exit, no traceback."""

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


def test_inverted_avatar_box_names_the_box():
    proc = run_cli("config", "show", "--set", "avatar.box=[300, 300, 100, 100]")
    assert_one_line_error(proc, 2, "avatar.box", "x2 > x1 and y2 > y1")


def test_talk_with_no_display_is_one_line_before_loading_anything():
    env = {"DISPLAY": "", "WAYLAND_DISPLAY": "", "QT_QPA_PLATFORM": "xcb"}
    proc = run_cli("talk", env=env, timeout=60)
    assert_one_line_error(proc, 7, "no display for the avatar window", "--no-window")
