"""Faults the program survives without losing anything: a transcript that cannot be
written (disk full, folder gone), a damaged face cache."""

from __future__ import annotations

import logging

import numpy as np

from avatar_agent.config import Config
from avatar_agent.face.analyzer import FaceAnalyzer
from avatar_agent.transcript import TranscriptLog

from .test_cli_errors import FACE, QUESTION, run_cli


def test_transcript_on_a_full_disk_keeps_the_records_and_warns_once(caplog):
    log = TranscriptLog("/dev/full")  # every write fails with ENOSPC
    with caplog.at_level(logging.WARNING, logger="avatar_agent.transcript"):
        assert log.append({"user": "one"}) is False
        assert log.append({"user": "two"}) is False
    assert log.pending == 2
    warnings = [r for r in caplog.records if "transcript not written" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    assert "No space left" in warnings[0].getMessage()


def test_transcript_catches_up_in_order_once_writable(tmp_path):
    blocker = tmp_path / "logs"
    blocker.write_text("a file where the transcript folder should be")
    log = TranscriptLog(blocker / "t.jsonl")
    assert log.append({"user": "first"}) is False
    assert log.append({"user": "second"}) is False
    blocker.unlink()  # the user fixes it
    assert log.append({"user": "third"}) is True
    assert [r["user"] for r in log.read()] == ["first", "second", "third"]
    assert log.pending == 0


def test_reply_goes_on_when_the_transcript_cannot_be_written(tmp_path):
    out = tmp_path / "reply.mp4"
    proc = run_cli("reply", "-i", str(QUESTION), "--image", str(FACE), "-o", str(out),
                   "--set", "transcript.path=/dev/full", "--set", "llm.max_tokens=24")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "transcript not written" in proc.stderr
    assert out.is_file() and out.stat().st_size > 10_000


def test_damaged_face_cache_is_analysed_again(store, hopper_bgr):
    image = hopper_bgr.copy()
    image[0, :7, 0] = [70, 65, 85, 76, 84, 83, 33]  # a pixel row of our own: a cache key no other test uses
    analyzer = FaceAnalyzer(cfg=Config(), store=store)
    cache = analyzer._cache_path(image)
    assert cache is not None
    cache.unlink(missing_ok=True)
    try:
        fresh = analyzer.analyze(image)
        assert cache.is_file()
        for damage in (b"", b"PK\x03\x04 not a zip at all", np.random.default_rng(0).bytes(4096)):
            cache.write_bytes(damage)
            again = FaceAnalyzer(cfg=Config(), store=store).analyze(image)
            assert np.allclose(again.points, fresh.points)
            assert cache.stat().st_size > 1000  # written back whole
            cached = FaceAnalyzer(cfg=Config(), store=store).analyze(image)
            assert np.array_equal(cached.points, again.points)
    finally:
        cache.unlink(missing_ok=True)
