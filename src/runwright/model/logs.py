"""Log lines: level detection and secret masking, as pure functions."""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import StrEnum


class Level(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class Stream(StrEnum):
    STDOUT = "stdout"
    STDERR = "stderr"
    SYSTEM = "system"


LEVEL_ORDER = {Level.DEBUG: 0, Level.INFO: 1, Level.WARNING: 2, Level.ERROR: 3}

# "ERROR:root:...", "WARNING:app:..." (logging's default format), "[ERROR] ...",
# "2026-11-22 10:00:00,123 ERROR name: ..." and "level=error" (logfmt).
_PREFIX = re.compile(
    r"^(?:\S+\s+\S+\s+)?\[?(?P<level>DEBUG|INFO|WARN|WARNING|ERROR|CRITICAL|FATAL)\]?[:\s]",
)
_LOGFMT = re.compile(r"\blevel=(?P<level>debug|info|warn|warning|error|critical|fatal)\b", re.I)
_ERROR_WORDS = re.compile(r"\b(error|exception|traceback|fatal|critical)\b", re.I)
# "warning", "deprecated", and Python's warning categories ("file.py:3: UserWarning: ...").
_WARNING_WORDS = re.compile(r"\b(warning|warn|deprecated|\w+Warning)\b", re.I)

# Every line the patterns above can match contains one of these (lower-cased).
_LEVEL_HINTS = ("debug", "warn", "deprecat", "error", "exception", "traceback", "fatal", "critical")

_NAMES = {
    "DEBUG": Level.DEBUG,
    "INFO": Level.INFO,
    "WARN": Level.WARNING,
    "WARNING": Level.WARNING,
    "ERROR": Level.ERROR,
    "CRITICAL": Level.ERROR,
    "FATAL": Level.ERROR,
}


def classify(message: str) -> Level:
    """The level a reader would give the line.

    An explicit logging prefix wins; otherwise the words error/exception/traceback
    mean error and warning/deprecated mean warning; anything else is info (the stream,
    stdout or stderr, is kept separately).
    """
    head = message[:200]
    # Most lines name no level at all: one cheap substring scan settles them.
    lowered = head.lower()
    if not any(word in lowered for word in _LEVEL_HINTS):
        return Level.INFO
    match = _PREFIX.match(head)
    if match:
        return _NAMES[match.group("level").upper()]
    match = _LOGFMT.search(head)
    if match:
        return _NAMES[match.group("level").upper()]
    if _ERROR_WORDS.search(head):
        return Level.ERROR
    if _WARNING_WORDS.search(head):
        return Level.WARNING
    return Level.INFO


_TRACEBACK_STARTS = ("Traceback (most recent call last)", "Exception Group Traceback")


class LevelTracker:
    """Classifies the lines of one stream, keeping a whole Python traceback at error."""

    __slots__ = ("_in_traceback",)

    def __init__(self) -> None:
        self._in_traceback = False

    def level(self, message: str) -> Level:
        if message.lstrip(" +|").startswith(_TRACEBACK_STARTS):
            self._in_traceback = True
            return Level.ERROR
        if self._in_traceback:
            if message[:1] in (" ", "\t") or not message:
                return Level.ERROR
            self._in_traceback = False  # the exception line closes the traceback
            return Level.ERROR
        return classify(message)


MASK = "****"


class Masker:
    """Replaces every occurrence of known secret values with ``****``."""

    __slots__ = ("_pattern",)

    def __init__(self, secrets: Iterable[str]) -> None:
        # Output is masked line by line, so a multi-line secret (a private key) is
        # masked line by line too.
        pieces = {part.strip() for s in secrets for part in s.splitlines()}
        values = sorted({p for p in pieces if p}, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(v) for v in values)) if values else None

    def __call__(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(MASK, text)
