"""User-facing errors: one line naming the problem and the fix, with an exit code.

The CLI catches :class:`AvatarError` and prints ``error: <message>`` to stderr with no
traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

# commands for which a quit signal (Ctrl-C, SIGTERM) is the normal way to end: exit 0
# (README: "Ctrl-C quits"); any other command interrupted exits 130, as shells report it
QUIT_IS_DONE = frozenset({"talk", "serve"})
INTERRUPTED_EXIT = 130


def quit_exit_code(command: str) -> int:
    """The exit code of a quit signal during ``command``."""
    return 0 if command in QUIT_IS_DONE else INTERRUPTED_EXIT


class AvatarError(Exception):
    """Base of every error a user can cause or fix. ``str(err)`` is one line."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(self.__str__())

    def __str__(self) -> str:
        text = self.message if not self.hint else f"{self.message} ({self.hint})"
        return " ".join(text.split())  # always one line


class ConfigError(AvatarError):
    """Invalid configuration: unknown key, wrong type, unknown provider, missing file."""

    exit_code = 2


class InputError(AvatarError):
    """A file or value the user gave cannot be used (audio, image, text)."""

    exit_code = 3


class NoFaceError(InputError):
    """The avatar image has no usable face."""


class ModelError(AvatarError):
    """A model file is missing, corrupt or cannot be fetched."""

    exit_code = 4


class ProviderError(AvatarError):
    """A provider failed at run time (network, auth, timeout, library error)."""

    exit_code = 5


class MissingExtraError(AvatarError):
    """An optional dependency is not installed."""

    exit_code = 6

    def __init__(self, what: str, extra: str, package: str | None = None) -> None:
        pkg = f" ({package} not importable)" if package else ""
        super().__init__(
            f"{what} needs the optional extra '{extra}'{pkg}",
            hint=f"install it with: pip install 'avatar-agent[{extra}]'",
        )


class DeviceError(AvatarError):
    """An audio device or display is absent or failed."""

    exit_code = 7


class StageTimeout(ProviderError):
    """A stage of a turn (STT, LLM, TTS, lip-sync) took longer than its ``timeouts.*``."""
