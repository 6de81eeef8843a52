"""How a quit signal (Ctrl-C = SIGINT, SIGTERM) ends the program, phase by phase.

- **Start-up** (imports, config, model loading, warm-up) and **tear-down**: the process
  exits at once with the command's quit code (0 for ``talk``/``serve``, 130 for the rest).
  Nothing needs cleaning up then (no window, recording or turn exists yet; the sound server
  and the OS close the rest). Raising KeyboardInterrupt there is not reliable: it lands at
  any bytecode, and in start-up that is mostly inside imports and library code, where it
  can be printed as "Exception ignored" and lost (a weakref callback of importlib's module
  locks: the program went on loading and listened), leave half-initialised modules behind
  (``import asyncio`` then fails with NameError), or end the process by SIGINT (-2).
- **A running conversation** (``talk``, ``serve``): the event loop's own handler
  (``loop.add_signal_handler``) quits it cleanly; :func:`exit_at_once` is put back when
  the loop lets go of the signal.
- **A file command** (``reply``, ``render``, ``say``…) once it runs: KeyboardInterrupt, so
  that its ``finally`` blocks remove half-written output; exit 130.
"""

from __future__ import annotations

import os
import signal
import sys

QUIT_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_exit_code: int | None = None  # set once exit_at_once is in charge (the process entry point)


def _set(handler) -> None:
    for sig in QUIT_SIGNALS:
        try:
            signal.signal(sig, handler)
        except ValueError:  # not the main thread (embedded use): leave the signals alone
            return


def exit_at_once(code: int) -> None:
    """From now on a quit signal ends the process at once with ``code``."""
    global _exit_code
    _exit_code = code

    def _exit(signum: int, frame: object) -> None:
        try:
            if code:
                print("interrupted", file=sys.stderr)
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException:  # noqa: BLE001 - a flush cut short (reentrant) must not stop the exit
            pass
        os._exit(code)

    _set(_exit)


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def raise_keyboard_interrupt() -> None:
    """From now on SIGINT and SIGTERM raise KeyboardInterrupt (a file command's run)."""
    for sig, handler in ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, _terminate)):
        try:
            signal.signal(sig, handler)
        except ValueError:
            return


def take_back() -> None:
    """After an event loop let go of the quit signals (tear-down): they exit at once
    again, where the process entry point had set that up (not in a test's process)."""
    if _exit_code is not None:
        exit_at_once(_exit_code)


def for_command(quit_exits: bool) -> None:
    """The command is known: a file command (``quit_exits`` false) takes KeyboardInterrupt
    from here on; talk and serve keep exiting at once until their loop takes over. Only
    where the process entry point set the signals up."""
    if _exit_code is not None and not quit_exits:
        raise_keyboard_interrupt()
