"""``talk`` with ``audio.vad.turn_model: smart_turn``: the model gates the early answer.

Real models (the embedded defaults plus Smart Turn v3.2), the named fake devices of
``tests/live_fakes.py``, a question spoken by espeak-ng. ``turn_threshold`` 0 means the
model's "complete" always wins: the turn commits at the pause (200 ms + one model call);
1 means it never does: the turn waits for the 600 ms hangover. Either way the question
is answered. (``none``, the default, is what tests/test_orchestrator.py runs.)
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import cv2
import pytest

from avatar_agent.audio.turn_end import MODEL_NAME
from avatar_agent.config import Config

from .live_fakes import session, until

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from make_questions import degrade, espeak  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("threshold", [0.0, 1.0])
async def test_the_turn_model_decides_between_the_pause_and_the_hangover(tmp_path, store, threshold):
    store.pull(MODEL_NAME)
    cfg = Config()
    cfg.transcript.path = tmp_path / "t.jsonl"
    cfg.audio.vad.turn_model = "smart_turn"
    cfg.audio.vad.turn_threshold = threshold
    question = degrade(espeak("What is the capital of Italy?", "en-us", 150), "clean")
    conv, mic, stream, task, presenter = await session(cfg, store, cv2.imread("examples/assets/face.png"))
    answered: list[float] = []  # when each real model call returned (monotonic)
    predict = conv.turn_end.predict

    def timed(*args):
        try:
            return predict(*args)
        finally:
            answered.append(time.monotonic())

    conv.turn_end.predict = timed
    try:
        assert conv.turn_end is not None
        await asyncio.sleep(0.3)
        mic.say(question)
        await until(lambda: conv.turns, 120, "the answer")
        record = conv.turns[0]
        assert "capital" in record.user.lower()
        commit = record.metrics.stages["commit"]  # end of speech -> the turn started
        hangover = cfg.audio.vad.hangover_ms / 1000
        if threshold == 0.0:
            # at the pause: as soon as the model answered (~0.2 s + one call, measured ~0.25 s
            # quiet), unless the call itself outlasted the hangover (a loaded machine: 0.58 s)
            assert answered, "the turn model was never asked"
            model_s = answered[0] - record.t_end
            assert commit <= max(model_s, 0.0) + 0.1, (commit, model_s)
            if model_s < hangover - 0.1:
                assert commit < hangover - 0.05, (commit, model_s)
        else:
            assert commit >= hangover - 0.03, commit  # 20 ms frames
    finally:
        conv.quit()
        await asyncio.wait_for(task, 10)
        stream.abort()
        presenter.stop()
        await conv.pipeline.aclose()
