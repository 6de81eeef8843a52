"""Is a reply in the configured language? A language identifier for the reply guard.

Small models drift into another language after a name or a city they associate with
it ("My name is Anna, and I live in Lisbon." → "Nossa mesaura, amo." and every later
reply in Portuguese, issue 19). :class:`LanguageCheck` tells the reply guard
(:class:`~avatar_agent.llm.base.RambleGuard`) whether the first words of a reply are
clearly in another language, so the reply is asked again before a word of it is spoken.

The identifier is py3langid (langid.py's maintained fork: a 4.6 MB wheel, numpy only,
~0.3 ms a call). On a few words langid is unsure, so two things keep it from crying
wolf on English: it ranks only a set of common languages (the configured one among
them), and a reply counts as foreign only when another language wins with a normalised
probability of at least ``min_prob`` (0.8). Measured on short replies: "Não, não.",
"Olá, Anna! Prazer em …", "Eu sou a Ava.", "Bonjour, je …", "Ich bin …" are caught
(0.88–1.00); "Paris.", "Yes.", "Lisbon, Portugal.", "Tokyo.", "Buenos Aires is in
Argentina." stay English (the winner below 0.5). Gibberish ("Nossa mesaura, amo.",
0.45) is not caught: no identifier can name its language.
"""

from __future__ import annotations

import threading

from ..errors import ConfigError

# languages a reply is ranked among (the configured one is added): those a small model
# drifts into, and the commonest others
CANDIDATES = ("en", "pt", "es", "fr", "de", "it", "nl", "pl", "ru", "sv", "tr", "zh", "ja", "ko", "ar", "hi")


class LanguageCheck:
    """``foreign(text)``: the language ``text`` is clearly written in when that is not
    ``language``, else None. Loads the model on first use (~1.4 s) or at :meth:`load`."""

    def __init__(self, language: str, *, min_prob: float = 0.8) -> None:
        self.language = language
        self.min_prob = min_prob
        self._ident = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Load the identifier now (blocking)."""
        with self._lock:
            if self._ident is not None:
                return
            from py3langid.langid import MODEL_FILE, LanguageIdentifier  # a core dependency

            ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
            known = set(ident.nb_classes)
            if self.language not in known:
                raise ConfigError(f"llm.language: '{self.language}' is not a language code the checker knows",
                                  hint="use an ISO 639-1 code such as en, de, fr; or null to turn the check off")
            ident.set_languages(sorted({self.language, *CANDIDATES} & known))
            self._ident = ident

    def foreign(self, text: str) -> str | None:
        """The other language ``text`` is clearly in, or None (the configured one, or unsure)."""
        if not any(c.isalpha() for c in text):
            return None
        self.load()
        lang, prob = self._ident.classify(text)  # type: ignore[union-attr]
        return lang if lang != self.language and prob >= self.min_prob else None
