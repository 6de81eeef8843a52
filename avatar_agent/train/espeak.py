"""espeak-ng speech *with its own phoneme timings*, for evaluating (and partly training)
the viseme model on voices other than Piper's.

The ``espeak-ng`` command prints no phoneme durations (``--pho`` needs MBROLA), but the
library reports a phoneme event (IPA name and sample position) for every sound it
synthesizes: ``libespeak-ng.so.1`` through ctypes, synchronous mode, phoneme events on.
espeak carries state from one utterance to the next within a process (its pitch
"flutter" counter among others), so every utterance is synthesized in a fresh small
subprocess, as the ``espeak-ng`` command does: the same text, voice and speed always give
the same samples and events.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from ..errors import InputError
from ..types import PhonemeTiming

# the child: stdlib only (starts in ~30 ms); reads the text on stdin, writes one JSON line
# (rate, events [[ipa, sample], ...]) then the int16 samples
_CHILD = r"""
import ctypes, ctypes.util, json, sys
class Id(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]
class Event(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint),
                ("text_position", ctypes.c_int), ("length", ctypes.c_int),
                ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", Id)]
CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(Event))
try:
    lib = ctypes.CDLL(ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1")
except OSError:
    sys.exit(3)
wav, events = [], []
@CB
def collect(w, n, e):
    if n > 0:
        wav.append(ctypes.string_at(w, 2 * n))
    i = 0
    while e[i].type != 0:
        if e[i].type == 7:  # espeakEVENT_PHONEME
            events.append([e[i].id.string.decode("utf-8", "replace"), e[i].sample])
        i += 1
    return 0
rate = lib.espeak_Initialize(2, 0, None, 3)  # synchronous; phoneme events, IPA names
if rate <= 0:
    sys.exit(4)
lib.espeak_SetSynthCallback(collect)
if lib.espeak_SetVoiceByName(sys.argv[1].encode()) != 0:
    sys.exit(5)
lib.espeak_SetParameter(1, int(sys.argv[2]), 0)  # espeakRATE, words per minute
text = sys.stdin.buffer.read()
lib.espeak_Synth(text, len(text) + 1, 0, 0, 0, 0, None, None)
lib.espeak_Synchronize()
out = sys.stdout.buffer
out.write(json.dumps({"rate": rate, "events": events}).encode() + b"\n")
out.write(b"".join(wav))
out.flush()
"""


def espeak_speech(text: str, voice: str = "en-us", speed: int = 175,
                  ) -> tuple[np.ndarray, int, tuple[PhonemeTiming, ...]]:
    """(float32 speech, sample rate, phoneme timings in s) from espeak-ng.

    A phoneme lasts from its event to the next one (pauses are events with no name: no
    sound). Stress marks are dropped from the names.
    """
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", _CHILD, voice, str(int(speed))],
                          input=text.encode(), capture_output=True, timeout=60)
    if proc.returncode == 3:
        raise InputError("libespeak-ng is not installed", hint="apt-get install espeak-ng")
    if proc.returncode == 5:
        raise InputError(f"espeak-ng has no voice '{voice}'", hint="see espeak-ng --voices=en")
    if proc.returncode != 0:
        raise InputError(f"espeak-ng failed (exit {proc.returncode})",
                         hint="is espeak-ng-data installed?")
    head, _, raw = proc.stdout.partition(b"\n")
    meta = json.loads(head)
    rate, events = int(meta["rate"]), meta["events"]
    pcm = np.frombuffer(raw[:len(raw) // 2 * 2], np.int16).astype(np.float32) / 32768.0
    out: list[PhonemeTiming] = []
    for i, (name, sample) in enumerate(events):
        end = events[i + 1][1] if i + 1 < len(events) else len(pcm)
        name = name.lstrip("ˈˌ")
        if name and end > sample:
            out.append(PhonemeTiming(name, sample / rate, min(end, len(pcm)) / rate))
    return pcm, rate, tuple(out)
