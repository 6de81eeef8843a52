"""espeak-ng speech *with its own phoneme timings*, for evaluating the viseme model on a
voice it never heard.

The ``espeak-ng`` command prints no phoneme durations (``--pho`` needs MBROLA), but the
library reports a phoneme event (IPA name and sample position) for every sound it
synthesizes: ``libespeak-ng.so.1`` through ctypes, synchronous mode, phoneme events on.
Deterministic: the same text, voice and speed give the same samples and events.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import threading

import numpy as np

from ..errors import InputError
from ..types import PhonemeTiming

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INIT_PHONEME_EVENTS, _INIT_PHONEME_IPA = 0x0001, 0x0002
_EVENT_PHONEME = 7
_RATE = 1


class _Id(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint),
                ("text_position", ctypes.c_int), ("length", ctypes.c_int),
                ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _Id)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.POINTER(_Event))
_LOCK = threading.Lock()
_STATE: dict = {"wav": [], "events": []}


@_CALLBACK
def _collect(wav, n, events):  # called by espeak during espeak_Synth (same thread)
    if n > 0:
        _STATE["wav"].append(np.ctypeslib.as_array(wav, (n,)).copy())
    i = 0
    while events[i].type != 0:
        if events[i].type == _EVENT_PHONEME:
            _STATE["events"].append((events[i].id.string.decode("utf-8", "replace"), events[i].sample))
        i += 1
    return 0


@functools.lru_cache(maxsize=1)
def _lib() -> tuple[ctypes.CDLL, int]:
    name = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        raise InputError("libespeak-ng is not installed",
                         hint="apt-get install espeak-ng (the library comes with it)") from None
    rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None,
                                 _INIT_PHONEME_EVENTS | _INIT_PHONEME_IPA)
    if rate <= 0:
        raise InputError("libespeak-ng failed to initialise", hint="is espeak-ng-data installed?")
    lib.espeak_SetSynthCallback(_collect)
    return lib, int(rate)


def espeak_speech(text: str, voice: str = "en-us", speed: int = 175,
                  ) -> tuple[np.ndarray, int, tuple[PhonemeTiming, ...]]:
    """(float32 speech, sample rate, phoneme timings in s) from espeak-ng.

    A phoneme lasts from its event to the next one (pauses are events with no name: no
    sound). Stress marks are dropped from the names.
    """
    lib, rate = _lib()
    with _LOCK:
        _STATE["wav"], _STATE["events"] = [], []
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise InputError(f"espeak-ng has no voice '{voice}'", hint="see espeak-ng --voices=en")
        lib.espeak_SetParameter(_RATE, int(speed), 0)
        data = text.encode()
        lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, 0, None, None)
        lib.espeak_Synchronize()
        wav, events = _STATE["wav"], _STATE["events"]
    pcm = (np.concatenate(wav).astype(np.float32) / 32768.0) if wav else np.zeros(0, np.float32)
    out: list[PhonemeTiming] = []
    for i, (name, sample) in enumerate(events):
        end = events[i + 1][1] if i + 1 < len(events) else len(pcm)
        name = name.lstrip("ˈˌ")
        if name and end > sample:
            out.append(PhonemeTiming(name, sample / rate, min(end, len(pcm)) / rate))
    return pcm, rate, tuple(out)
