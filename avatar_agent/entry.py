"""The process entry point (``avatar-agent`` and ``python -m avatar_agent``).

It imports nothing heavy, so that it can take charge of the quit signals before the
rest of the program loads: Ctrl-C (SIGINT) and SIGTERM end the program at any moment,
including the first second of imports. Without this, a SIGINT that arrives while Python
imports the models' libraries raises KeyboardInterrupt with a traceback, and a process
started with SIGINT ignored (a background job of a script, ``nohup``) carries on loading
until asyncio installs its own handler much later; SIGTERM kills at once, with no clean-up.
"""

from __future__ import annotations

import signal
import sys

from .errors import quit_exit_code


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM: quit like Ctrl-C (clean-up runs), until an event loop takes the signal over."""
    raise KeyboardInterrupt


def install_quit_signals() -> None:
    """SIGINT raises KeyboardInterrupt (also where it was inherited as ignored), and so
    does SIGTERM. asyncio's runner and ``loop.add_signal_handler`` take over from these
    once a command's loop runs. Main thread only (else a no-op)."""
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread (embedded use)
        pass


def run() -> None:
    """Install the signal handlers, then run the CLI; never a traceback for a quit signal."""
    install_quit_signals()
    argv = sys.argv[1:]
    try:
        from .cli import main

        code = main(argv)
    except KeyboardInterrupt:  # before the CLI could catch it (its imports)
        code = quit_exit_code(next((a for a in argv if not a.startswith("-")), ""))
        if code:
            print("interrupted", file=sys.stderr)
    raise SystemExit(code)
