"""What the three OpenAI providers (STT, LLM, TTS) share: the client and its errors.

The real ``openai`` client does the HTTP work: timeouts on every call and bounded
retries with exponential backoff (honouring ``Retry-After``) on 408/409/429/5xx and
connection errors, set from the provider's ``timeout_s`` and ``max_retries``. Here
its exceptions become one-line :class:`ProviderError` s that say what to fix, with the
API key never in a message or a log line (OpenAI's own 401 text echoes part of it).
"""

from __future__ import annotations

import asyncio
import os
import re
from typing import Any, Protocol

from ..errors import AvatarError, ConfigError, ProviderError

# a placeholder for OpenAI-compatible servers that ignore the key (Ollama, llama.cpp server)
_NO_KEY = "no-key"
_SECRETISH = re.compile(r"\b(sk|key|tok)-[A-Za-z0-9_\-*.]{4,}")


class OpenAISection(Protocol):
    """The config fields every OpenAI provider section has."""

    model: str
    base_url: str | None
    api_key_env: str
    timeout_s: float
    max_retries: int


class OpenAIClient:
    """An ``AsyncOpenAI`` per event loop for one config section (``where``: ``llm.openai``).

    The key is read from the environment variable named by ``api_key_env`` when the
    provider is built. It may be missing only when ``base_url`` points at a server
    that needs none.
    """

    def __init__(self, section: OpenAISection, where: str) -> None:
        self.section = section
        self.where = where
        key = os.environ.get(section.api_key_env, "").strip()
        if not key and not section.base_url:
            raise ConfigError(
                f"{where}: environment variable {section.api_key_env} is not set",
                hint=f"export {section.api_key_env}=<your key>, or change {where}.api_key_env",
            )
        self._key = key or _NO_KEY
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def get(self) -> Any:
        """The client for the running loop (httpx pools cannot cross event loops)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            from openai import AsyncOpenAI

            s = self.section
            self._client = AsyncOpenAI(
                api_key=self._key, base_url=s.base_url, max_retries=s.max_retries,
                timeout=s.timeout_s,  # per attempt: connect, each read, write
            )
            self._loop = loop
        return self._client

    def error(self, exc: BaseException) -> AvatarError:
        """Map an ``openai`` exception to one clear line; never includes the key."""
        import openai

        s, where = self.section, self.where
        endpoint = s.base_url or "api.openai.com"
        if isinstance(exc, openai.AuthenticationError):
            return ProviderError(
                f"{where}: {endpoint} rejected the API key from {s.api_key_env} (HTTP 401)",
                hint=f"set a valid key in the environment variable {s.api_key_env}",
            )
        if isinstance(exc, openai.PermissionDeniedError):
            return ProviderError(
                f"{where}: the key from {s.api_key_env} may not use model '{s.model}' (HTTP 403)",
                hint=f"check the key's project or {where}.model",
            )
        if isinstance(exc, openai.NotFoundError):
            return ProviderError(f"{where}: model '{s.model}' or its endpoint not found at {endpoint} (HTTP 404)",
                                 hint=f"check {where}.model and {where}.base_url")
        if isinstance(exc, openai.RateLimitError):
            return ProviderError(f"{where}: rate limited (HTTP 429) after {s.max_retries} retries",
                                 hint=f"wait and retry, or raise {where}.max_retries")
        if isinstance(exc, openai.APITimeoutError):
            return ProviderError(f"{where}: no answer from {endpoint} within {s.timeout_s:g} s",
                                 hint=f"raise {where}.timeout_s or check the server")
        if isinstance(exc, openai.APIConnectionError):
            return ProviderError(f"{where}: cannot connect to {endpoint}",
                                 hint=f"check the network and {where}.base_url")
        if isinstance(exc, openai.APIStatusError):
            return ProviderError(f"{where}: HTTP {exc.status_code} from {endpoint}: {self.scrub(_message(exc))}")
        return ProviderError(f"{where}: {type(exc).__name__}: {self.scrub(str(exc))}")

    def scrub(self, text: str) -> str:
        """Remove the key (and anything key-shaped) from ``text``; cut it to one short line."""
        if self._key and self._key != _NO_KEY:
            text = text.replace(self._key, "***")
        text = _SECRETISH.sub("***", text)
        text = " ".join(text.split())
        return text[:200]


def _message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
    return str(getattr(exc, "message", "") or exc)
