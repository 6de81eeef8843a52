"""Long renders show progress: Mp4Writer's optional ``progress`` (silent by default)."""

from __future__ import annotations

import io

import numpy as np

from avatar_agent.render.mp4 import Mp4Writer, ProgressLine, probe


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


FRAMES = np.zeros((25, 32, 32, 3), np.uint8)  # 1 s of video at 25 fps


def _write_seconds(writer: Mp4Writer, clock: _Clock, seconds: int, step_s: float) -> None:
    for _ in range(seconds):
        writer.add_frames(FRAMES)
        clock.now += step_s


def test_callable_progress_is_throttled_to_once_a_second_and_reports_the_end(tmp_path):
    clock, seen = _Clock(), []
    writer = Mp4Writer(tmp_path / "x.mp4", fps=25, sample_rate=16000, preset="ultrafast",
                       progress=seen.append, clock=clock)
    _write_seconds(writer, clock, 10, step_s=0.25)  # 10 s of video made in 2.5 s
    assert seen == [1.0, 5.0, 9.0]  # at most once per wall-clock second
    writer.close()
    assert seen[-1] == 10.0  # the final figure on close
    assert probe(tmp_path / "x.mp4")["frames"] == 250


def test_stderr_line_on_a_tty_updates_in_place_and_ends_with_a_newline(tmp_path):
    clock, tty = _Clock(), _Tty()
    line = ProgressLine("out.mp4", tty)
    with Mp4Writer(tmp_path / "out.mp4", fps=25, sample_rate=16000, preset="ultrafast",
                   progress=line, clock=clock) as writer:
        _write_seconds(writer, clock, 3, step_s=1.0)
        assert "\n" not in tty.getvalue()  # one updating line while writing
    text = tty.getvalue()
    assert text.endswith("\n") and text.count("\n") == 1
    updates = text.rstrip("\n").split("\r")[1:]
    assert updates == ["writing out.mp4: 1.0 s of video", "writing out.mp4: 2.0 s of video",
                       "writing out.mp4: 3.0 s of video", "writing out.mp4: 3.0 s of video"]


def test_progress_true_is_silent_when_stderr_is_not_a_tty(tmp_path, capsys):
    with Mp4Writer(tmp_path / "x.mp4", fps=25, sample_rate=16000, preset="ultrafast",
                   progress=True) as writer:
        writer.add_frames(FRAMES)
    assert capsys.readouterr().err == ""


def test_default_is_silent(tmp_path, capsys):
    with Mp4Writer(tmp_path / "x.mp4", fps=25, sample_rate=16000, preset="ultrafast") as writer:
        writer.add_frames(FRAMES)
    assert capsys.readouterr().err == ""


def test_an_aborted_write_still_ends_the_line(tmp_path):
    tty = _Tty()
    writer = Mp4Writer(tmp_path / "x.mp4", fps=25, sample_rate=16000, preset="ultrafast",
                       progress=ProgressLine("x.mp4", tty))
    writer.add_frames(FRAMES)
    writer.abort()
    assert tty.getvalue() == "\rwriting x.mp4: 1.0 s of video\n"
    assert list(tmp_path.iterdir()) == []
