"""Providers chosen by name through one lazy factory.

Each entry maps a provider name to ``"module:Class"`` and the pip extra that holds its
heavy dependency. Nothing heavy is imported until :func:`create` is called; a missing
library becomes one clear line naming the extra to install.
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import ConfigError, MissingExtraError

# role -> name -> (import path, pip extra or None when the core install suffices)
PROVIDERS: dict[str, dict[str, tuple[str, str | None]]] = {
    "stt": {
        "moonshine": ("avatar_agent.stt.moonshine:MoonshineSTT", "local"),
        "faster_whisper": ("avatar_agent.stt.faster_whisper:FasterWhisperSTT", "local"),
        "whisper": ("avatar_agent.stt.whisper:WhisperSTT", "whisper"),
        "openai": ("avatar_agent.stt.openai:OpenAISTT", None),
    },
    "llm": {
        "llama_cpp": ("avatar_agent.llm.llama_cpp:LlamaCppLLM", "local"),
        "openai": ("avatar_agent.llm.openai:OpenAILLM", None),
    },
    "tts": {
        "piper": ("avatar_agent.tts.piper:PiperTTS", "local"),
        "coqui": ("avatar_agent.tts.coqui:CoquiTTS", "coqui"),
        "openai": ("avatar_agent.tts.openai:OpenAITTS", None),
    },
    "lipsync": {
        "viseme": ("avatar_agent.lipsync.viseme:VisemeEngine", None),
        "wav2lip": ("avatar_agent.lipsync.wav2lip:Wav2LipEngine", None),
    },
}

# third-party module name -> pip extra that provides it (for ImportError messages)
_MODULE_EXTRAS = {
    "faster_whisper": "local",
    "moonshine_voice": "local",
    "ctranslate2": "local",
    "piper": "local",
    "llama_cpp": "local",
    "bm25s": "local",  # llm.knowledge
    "Stemmer": "local",
    "whisper": "whisper",
    "torch": "convert",
    "TTS": "coqui",
}


def names(role: str) -> list[str]:
    """The provider names known for ``role`` (``stt``, ``llm``, ``tts``, ``lipsync``)."""
    return sorted(PROVIDERS[role])


def resolve(role: str, name: str) -> type:
    """Import and return the provider class for ``role``/``name``."""
    try:
        target, extra = PROVIDERS[role][name]
    except KeyError:
        raise ConfigError(
            f"{role}.provider: unknown provider '{name}'",
            hint=f"expected one of: {', '.join(names(role))}",
        ) from None
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing and missing != "avatar_agent":
            raise MissingExtraError(
                f"{role} provider '{name}'", _MODULE_EXTRAS.get(missing, extra or "local"), missing
            ) from None
        raise
    cls = getattr(module, class_name)
    for needed in getattr(cls, "requires", ()):  # the libraries it imports only when loading
        try:
            importlib.import_module(needed)
        except ImportError as exc:
            missing = (exc.name or needed).split(".")[0]
            raise MissingExtraError(f"{role} provider '{name}'",
                                    _MODULE_EXTRAS.get(missing, extra or "local"), missing) from None
    return cls


def create(role: str, name: str, *args: Any, **kwargs: Any) -> Any:
    """Build the provider ``name`` for ``role`` with the given arguments."""
    return resolve(role, name)(*args, **kwargs)
