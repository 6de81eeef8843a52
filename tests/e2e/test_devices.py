"""Capture, VAD and playback through the real sounddevice streams on virtual devices."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from avatar_agent.audio.capture import MicCapture
from avatar_agent.audio.io import write_wav
from avatar_agent.audio.playback import Playback
from avatar_agent.audio.vad import SpeechStart, VadSegmenter
from avatar_agent.types import Utterance

from .conftest import Recorder, play_into_mic

pytestmark = pytest.mark.e2e


async def test_mic_blocks_and_vad_utterance(avdevices, speak, tmp_path):
    question = speak("What is the capital of France?", sr=22050)
    wav = write_wav(tmp_path / "q.wav", question, 22050)
    mic = MicCapture(sample_rate=16000, block_ms=20)
    mic.start()
    vad = VadSegmenter(sample_rate=16000)
    events = []
    try:
        player = asyncio.create_task(asyncio.to_thread(play_into_mic, wav))
        deadline = time.monotonic() + 15
        async for block in mic.blocks():
            assert len(block.pcm) == 320  # fixed blocks (tests/harness/README.md, pitfall 7)
            events += vad.push(block.pcm, block.t)
            if any(isinstance(e, Utterance) for e in events) or time.monotonic() > deadline:
                break
        await player
    finally:
        mic.close()
    utts = [e for e in events if isinstance(e, Utterance)]
    assert [type(e) for e in events] == [SpeechStart, Utterance], events
    speech_s = len(question) / 22050
    assert abs(utts[0].duration_s - speech_s) < 0.8, (utts[0].duration_s, speech_s)
    assert mic.overflows <= 2 and mic.dropped_blocks == 0


def test_playback_is_heard_and_flush_cuts_it(avdevices, speak, tmp_path):
    reply = speak("This is a long reply that the listener is going to interrupt "
                  "well before it reaches its natural end.", sr=22050)
    pb = Playback(block_ms=20)
    pb.start()
    rec = Recorder(tmp_path / "heard.wav")
    try:
        time.sleep(0.5)
        at = pb.enqueue(reply, 22050)
        time.sleep(1.5)
        heard_pos = pb.flush()
        time.sleep(1.0)
        assert pb.queued_s() < 0.01
    finally:
        _, audio = rec.stop()
        pb.close()
    reply_s = len(reply) / 22050
    assert reply_s > 4.0, reply_s  # the flush cuts it well before its natural end
    heard_s = pb.heard_samples(at, heard_pos) / at.rate
    assert 1.2 < heard_s < 1.6, heard_s
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    assert len(loud), "nothing reached the speaker"
    played_s = (loud[-1] - loud[0]) / rec.rate
    # what came out of the speaker is what the clock says was heard (plus the device buffer)
    assert abs(played_s - heard_s) < 0.15, (played_s, heard_s)
    # and the speaker stays silent after the flush: the recording runs on for the 1 s
    # after it (a flush that only emptied our queue would let the device play on)
    silent_after_s = (len(audio) - loud[-1]) / rec.rate
    assert silent_after_s > 0.7, silent_after_s
