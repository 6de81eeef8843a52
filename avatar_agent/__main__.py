"""``python -m avatar_agent`` entry point."""

from .entry import run

run()
