"""The transport interface: local devices and the WebRTC side offer the same methods.

``Conversation`` is written against :mod:`avatar_agent.transport`; both ``talk``'s
devices and ``serve``'s tracks must satisfy it (checked on real, unopened objects).
"""

from __future__ import annotations

import asyncio
import inspect

import numpy as np

from avatar_agent import transport
from avatar_agent.audio.capture import MicCapture
from avatar_agent.audio.playback import Playback
from avatar_agent.render.window import Presenter


def _members(proto: type) -> set[str]:
    return {n for n in vars(proto) if not n.startswith("_")}


def _check(obj: object, proto: type) -> None:
    assert isinstance(obj, proto), f"{type(obj).__name__} is not a {proto.__name__}"
    for name in _members(proto):
        assert hasattr(obj, name), f"{type(obj).__name__} lacks {name}"
        want = getattr(proto, name)
        if inspect.isfunction(want):  # same parameters, so Conversation's calls fit both
            got = inspect.signature(getattr(obj, name))
            assert list(got.parameters) == list(inspect.signature(want).parameters)[1:], (
                type(obj).__name__, name, got)


def test_local_devices_are_a_transport() -> None:
    pb = Playback(sample_rate=48000)
    _check(MicCapture(), transport.MicSource)
    _check(pb, transport.SpeakerClock)
    _check(Presenter(clock=pb, idle_fn=lambda t: np.zeros((4, 4, 3), np.uint8), fps=25,
                     window=False), transport.Screen)


async def test_webrtc_side_is_a_transport() -> None:
    from avatar_agent.web.rtc import RtcMic, RtcSpeaker

    mic = RtcMic()
    speaker = RtcSpeaker()
    _check(mic, transport.MicSource)
    _check(speaker, transport.SpeakerClock)
    # the speaker's clock is the count of samples its track sent: 20 ms a frame
    speaker.start()
    at = speaker.enqueue(np.ones(4800, np.float32) * 0.5, 48000)
    assert at.start == 0 and at.length == 4800
    frames = [await speaker.track.recv() for _ in range(3)]
    assert [f.pts for f in frames] == [0, 960, 1920]
    assert frames[0].to_ndarray().max() > 16000  # the queued audio went out
    assert 0 < speaker.heard_position() <= 2880
    # flush: silence from the next frame on, the clock runs on
    speaker.flush()
    later = [await speaker.track.recv() for _ in range(2)]
    assert abs(later[-1].to_ndarray()).max() == 0 and later[-1].pts == 3840
    speaker.close()
    # the mic ends its blocks when closed
    mic.close()
    got = [b async for b in mic.blocks()]
    assert got == []
    await asyncio.sleep(0)


async def test_webrtc_mic_blocks_from_decoded_opus_frames() -> None:
    """48 kHz stereo s16 frames (what aiortc's Opus decoder hands out) → 16 kHz mono
    blocks of block_ms each, in order, with increasing capture times; the track's end
    ends the blocks."""
    import fractions

    import av
    from aiortc import MediaStreamTrack
    from aiortc.mediastreams import MediaStreamError

    from avatar_agent.web.rtc import RtcMic

    t = np.arange(48000) / 48000.0
    tone = (np.sin(2 * np.pi * 440 * t) * 0.5 * 32767).astype(np.int16)

    class Decoded(MediaStreamTrack):  # stands in for the network: the frames are real
        kind = "audio"
        n = 0

        async def recv(self):
            if self.n == 50:
                raise MediaStreamError
            pcm = tone[self.n * 960:(self.n + 1) * 960]
            frame = av.AudioFrame.from_ndarray(np.repeat(pcm, 2).reshape(1, -1),
                                               format="s16", layout="stereo")
            frame.sample_rate, frame.pts = 48000, self.n * 960
            frame.time_base = fractions.Fraction(1, 48000)
            self.n += 1
            await asyncio.sleep(0.001)
            return frame

    mic = RtcMic(sample_rate=16000, block_ms=20)
    mic.attach(Decoded())
    blocks = [b async for b in mic.blocks()]
    assert 45 <= len(blocks) <= 50 and all(len(b.pcm) == 320 for b in blocks)
    assert all(b.sample_rate == 16000 for b in blocks)
    assert all(b2.t >= b1.t for b1, b2 in zip(blocks, blocks[1:], strict=False))
    pcm = np.concatenate([b.pcm for b in blocks])
    spectrum = np.abs(np.fft.rfft(pcm[1600:]))
    peak_hz = np.argmax(spectrum) * 16000 / len(pcm[1600:])
    assert abs(peak_hz - 440) < 5, peak_hz
    assert 0.3 < np.abs(pcm[1600:]).max() < 0.6
    assert mic.received_s > 0.9


async def test_webrtc_speaker_drops_audio_it_is_too_late_for() -> None:
    """A sender starved for a second does not fall a second behind: like a sound card it
    drops what is too late, so the clock keeps wall-clock pace (talk's playout wait
    would call a lagging clock a lost device)."""
    from avatar_agent.web.rtc import RtcSpeaker

    speaker = RtcSpeaker()
    speaker.start()
    speaker.enqueue(np.full(96000, 0.25, np.float32), 48000)  # 2 s
    first = await speaker.track.recv()
    speaker.track._start -= 1.0  # as if the loop had been stalled for a second
    late = await speaker.track.recv()
    assert 0.9 <= speaker.skipped_s <= 1.05, speaker.skipped_s
    assert late.pts - first.pts >= 0.9 * 48000  # the gap is visible to the receiver
    assert speaker.queued_s() < 1.1  # the skipped second left the queue
    speaker.close()


def test_the_protocols_cover_what_the_conversation_uses() -> None:
    """Every mic/playback/presenter member Conversation touches is in the interface, so
    a transport written against it works with the conversation engine."""
    import re

    import avatar_agent.live as live

    src = inspect.getsource(live.Conversation)
    protos = {"mic": transport.MicSource, "playback": transport.SpeakerClock,
              "presenter": transport.Screen}
    used = set(re.findall(r"self\.(mic|playback|presenter)\.([a-z_]+)", src))
    assert used, "Conversation no longer uses self.mic/playback/presenter?"
    for part, member in sorted(used):
        assert member in _members(protos[part]) | {"sample_rate"}, (
            f"Conversation uses {part}.{member}, which avatar_agent/transport.py lacks")
