"""Audio device lookup for ``avatar-agent devices`` and the live streams.

A device is named in the config by index or by a case-insensitive substring of its name;
``None`` is the system default. Anything that cannot be found is one :class:`DeviceError`
line that says what exists.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from ..errors import DeviceError

Kind = Literal["input", "output"]


def _sd():
    try:
        import sounddevice as sd
    except OSError as exc:  # libportaudio2 missing
        raise DeviceError(f"audio is unavailable: {exc}",
                          hint="install the system package libportaudio2") from None
    return sd


def _channels_key(kind: Kind) -> str:
    return "max_input_channels" if kind == "input" else "max_output_channels"


def list_devices(kind: Kind | None = None) -> list[dict]:
    """Devices PortAudio sees (dicts with ``index``, ``name``, channels, default rate)."""
    sd = _sd()
    try:
        devices = list(sd.query_devices())
    except Exception as exc:  # PortAudio errors are plain exceptions
        raise DeviceError(f"cannot list audio devices: {exc}") from None
    out = []
    for index, dev in enumerate(devices):
        dev = dict(dev)
        dev["index"] = index
        if kind is None or dev[_channels_key(kind)] > 0:
            out.append(dev)
    return out


def find_device(spec: str | int | None, kind: Kind) -> dict:
    """Resolve a config device spec (index, name substring, ``None`` = default) to a device.

    Raises :class:`DeviceError` when no matching device with ``kind`` channels exists.
    """
    sd = _sd()
    candidates = list_devices(kind)
    if not candidates:
        raise DeviceError(f"no audio {kind} device found",
                          hint="connect one, or check the sound server (avatar-agent devices)")
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        try:
            dev = dict(sd.query_devices(kind=kind))
        except Exception:  # no default set: take the first usable one
            return candidates[0]
        dev["index"] = next((d["index"] for d in candidates if d["name"] == dev["name"]),
                            candidates[0]["index"])
        return dev
    if isinstance(spec, int) or (isinstance(spec, str) and spec.strip().isdigit()):
        index = int(spec)
        for dev in candidates:
            if dev["index"] == index:
                return dev
    else:
        matches = [d for d in candidates if spec.lower() in d["name"].lower()]
        if matches:
            return matches[0]
    names = ", ".join(f"{d['index']}: {d['name']}" for d in candidates)
    raise DeviceError(f"audio.{kind}_device {spec!r}: no such {kind} device",
                      hint=f"available: {names}")


def describe_devices() -> str:
    """A human-readable table of input/output devices, defaults marked with ``*``."""
    sd = _sd()
    devices = list_devices()
    if not devices:
        return "no audio devices found (is a sound server running? PULSE_SERVER / ALSA config)"
    try:
        default_in, default_out = sd.default.device
    except Exception:
        default_in = default_out = -1
    hostapis = [h["name"] for h in sd.query_hostapis()]
    lines = ["  #  in out  rate   name"]
    for d in devices:
        mark = ("<" if d["index"] == default_in else " ") + (">" if d["index"] == default_out else " ")
        api = hostapis[d["hostapi"]] if d["hostapi"] < len(hostapis) else "?"
        lines.append(f"{mark}{d['index']:>2} {d['max_input_channels']:>3} {d['max_output_channels']:>3} "
                     f"{int(d['default_samplerate']):>6}  {d['name']} ({api})")
    lines.append("< default input, > default output; set audio.input_device / audio.output_device "
                 "to an index or a name substring")
    return "\n".join(lines)


def close_stream(stream: Any, what: str) -> None:
    """Abort and close a sounddevice stream; a vanished device that fails to close is
    logged, not raised (nothing is left to free). ``what``: "mic" or "speaker"."""
    if stream is None:
        return
    try:
        stream.abort()
        stream.close()
    except Exception:
        logging.getLogger(__name__).debug("stream close failed", extra={"stream": what})
