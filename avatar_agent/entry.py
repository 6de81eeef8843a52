"""The process entry point (``avatar-agent`` and ``python -m avatar_agent``).

It imports nothing heavy, so that it takes charge of the quit signals before the rest of
the program loads: Ctrl-C (SIGINT) and SIGTERM end the program at any moment, the first
second of imports included, also where SIGINT was inherited as ignored (a background job
of a script, ``nohup``: asyncio then never installs its handler). See :mod:`.signals`.
"""

from __future__ import annotations

import sys

from .errors import quit_exit_code
from .signals import exit_at_once


def command_of(argv: list[str]) -> str:
    """The command named in ``argv`` (the first word that is not an option), or ""."""
    return next((a for a in argv if not a.startswith("-")), "")


def run() -> None:
    """Quit signals exit at once until the command takes them over; run the CLI."""
    argv = sys.argv[1:]
    exit_at_once(quit_exit_code(command_of(argv)))
    from .cli import main

    raise SystemExit(main(argv))
