"""The conversation benchmark's script: short dialogues of spoken turns with answer keys.

Written for this benchmark (issue 19). Memory probes and follow-ups need order, so the
set is a few dialogues of 9 turns; ``bench_conversation`` runs each dialogue in a fresh
``talk`` process, so a probe can only be answered from what was said in its own dialogue
and one dialogue's failure (a drift into Portuguese) does not poison the next. Probes sit
at most 6 turns after the fact they ask for: ``llm.history_turns`` keeps 6 pairs by
default, so a longer distance would test the config, not the brain.

A turn's text may hold ``|``: a pause of ``pause_s`` seconds is spoken there ("Hello! …
My name is Anna."), to count false cuts. ``key``: regexes (case-insensitive, on the
reply as heard) any one of which makes the answer right; ``None``: a statement or
chit-chat, checked for sense only (not empty, English, not a copy). ``exact``: the whole
reply, normalised, must match (the one-word instructions).

The human dialogue is made of recordings, not of this text: see
``conversation_voices.human_clips``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Turn:
    """One spoken user turn and how its reply is judged."""

    text: str                           # the script; "|" = a pause inside the utterance
    kind: str                           # fact, arith, yesno, instruct, followup, memory, chat, statement
    key: tuple[str, ...] | None = None  # acceptable answers (regexes), any one matches
    exact: bool = False                 # the whole normalised reply must match the key
    pause_s: float = 0.8                # length of each "|" pause

    @property
    def script(self) -> str:
        """The words as spoken, pauses removed (the reference for WER)."""
        return " ".join(p.strip() for p in self.text.split("|"))


@dataclass(frozen=True)
class Dialogue:
    """Turns spoken in order to one fresh ``talk`` process."""

    name: str
    turns: tuple[Turn, ...]


def _t(text: str, kind: str, *key: str, exact: bool = False, pause_s: float = 0.8) -> Turn:
    return Turn(text, kind, tuple(key) or None, exact, pause_s)


YES = r"\byes\b", r"\byeah\b", r"\bof course\b", r"\bit is\b", r"\bthey do\b", r"\bindeed\b"
NO = r"\bno\b", r"\bnot\b", r"\bisn'?t\b", r"\bsmaller\b"

DIALOGUES: tuple[Dialogue, ...] = (
    Dialogue("anna", (
        _t("Hello! | My name is Anna and I live in Lisbon.", "statement", pause_s=0.8),
        _t("What is two plus three?", "arith", r"\b5\b", r"\bfive\b"),
        _t("What is the capital of France?", "fact", r"\bparis\b"),
        _t("And how many people live in that city?", "followup", r"\bmillions?\b"),
        _t("What is my name?", "memory", r"\banna\b"),
        _t("Which animal says moo?", "fact", r"\bcows?\b", r"\bcattle\b"),
        _t("Where do I live?", "memory", r"\blisbon\b"),
        _t("Say just the word blue.", "instruct", r"blue", exact=True),
        _t("What is the capital of Spain?", "fact", r"\bmadrid\b"),
    )),
    Dialogue("tom", (
        _t("Hi, I am Tom. | My favourite colour is green.", "statement", pause_s=0.6),
        _t("How many legs does a spider have?", "fact", r"\b8\b", r"\beight\b"),
        _t("Is the sun a star?", "yesno", *YES),
        _t("What is | seven times eight?", "arith", r"\b56\b", r"\bfifty[- ]six\b", pause_s=0.6),
        _t("What is my favourite colour?", "memory", r"\bgreen\b"),
        _t("What is my name?", "memory", r"\btom\b"),
        _t("What is the capital of Italy?", "fact", r"\brome\b"),
        _t("And which river runs through that city?", "followup", r"\btiber\b"),
        _t("How many wheels does a bicycle have?", "fact", r"\b2\b", r"\btwo\b"),
    )),
    Dialogue("japan", (
        _t("What is the capital of Japan?", "fact", r"\btokyo\b"),
        _t("And what language do people speak there?", "followup", r"\bjapanese\b"),
        _t("How many days are there in a week?", "fact", r"\b7\b", r"\bseven\b"),
        _t("Is ice colder than boiling water?", "yesno", *YES, r"\bcolder\b"),
        _t("What is ten minus four?", "arith", r"\b6\b", r"\bsix\b"),
        _t("Say just the word hello.", "instruct", r"hello", exact=True),
        _t("What colour is grass?", "fact", r"\bgreen\b"),
        _t("How are you today?", "chat", r"\bgood\b", r"\bfine\b", r"\bwell\b", r"\bgreat\b",
           r"\bthanks?\b", r"\bdoing\b", r"\bokay\b", r"\bhappy\b"),
        _t("Can you tell me a short joke?", "chat"),
    )),
    Dialogue("max", (
        _t("I have a dog called Max.", "statement"),
        _t("What do bees make?", "fact", r"\bhoney\b"),
        _t("How many hours are there in one day?", "fact", r"\b24\b", r"\btwenty[- ]four\b"),
        _t("What is the name of my dog?", "memory", r"\bmax\b"),
        _t("Do fish live in water?", "yesno", *YES),
        _t("What is the largest ocean on Earth?", "fact", r"\bpacific\b"),
        _t("What kind of animal is Max?", "memory", r"\bdogs?\b", r"\bpupp(y|ies)\b"),
        _t("What is three plus four?", "arith", r"\b7\b", r"\bseven\b"),
        _t("What colour is a ripe banana?", "fact", r"\byellow\b"),
    )),
    Dialogue("berlin", (
        _t("I am going to Berlin next week. | I love travelling by train.", "statement", pause_s=1.0),
        _t("Which country is Berlin in?", "fact", r"\bgermany\b"),
        _t("What is the opposite of hot?", "fact", r"\bcold\b"),
        _t("Which city am I going to visit?", "memory", r"\bberlin\b"),
        _t("What is nine plus ten?", "arith", r"\b19\b", r"\bnineteen\b"),
        _t("Is the moon bigger than the Earth?", "yesno", *NO),
        _t("How do I like to travel?", "memory", r"\btrains?\b", r"\brail\b"),
        _t("What is the capital of England?", "fact", r"\blondon\b"),
        _t("Thank you, goodbye!", "chat", r"\bbye\b", r"\bgoodbye\b", r"\bwelcome\b", r"\bpleasure\b",
           r"\bcare\b", r"\bday\b", r"\bsoon\b", r"\bthank"),
    )),
    Dialogue("pizza", (
        _t("My favourite food is pizza.", "statement"),
        _t("What is twelve divided by three?", "arith", r"\b4\b", r"\bfour\b"),
        _t("Who wrote Romeo and Juliet?", "fact", r"\bshakespeare\b"),
        _t("How many months are there in a year?", "fact", r"\b12\b", r"\btwelve\b"),
        _t("What is my favourite food?", "memory", r"\bpizzas?\b"),
        _t("Which planet do we live on?", "fact", r"\bearth\b"),
        _t("Is a tomato blue?", "yesno", *NO, r"\bred\b"),
        _t("At what temperature does water freeze, in degrees Celsius?", "fact", r"\b0\b", r"\bzero\b"),
        _t("Tell me something nice about the weather.", "chat", r"\bsun", r"\brain", r"\bwarm",
           r"\bweather\b", r"\bsky\b", r"\bday\b", r"\bbeautiful\b", r"\bbreeze\b", r"\bclouds?\b"),
    )),
)


def keyed_count() -> int:
    """Number of turns with an answer key (the issue asks for at least 40)."""
    return sum(t.key is not None for d in DIALOGUES for t in d.turns)
