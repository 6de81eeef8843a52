"""``python -m avatar_agent`` entry point."""

from .cli import main

raise SystemExit(main())
