"""Log lines as pure functions: level detection and secret masking; and the numbering
of a run's captured lines."""

from __future__ import annotations

import sys
import threading
import traceback
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runwright.model.logs import MASK, Level, LevelTracker, Masker, Stream, classify
from runwright.model.manifest import secret_values
from runwright.model.runs import LogLine
from runwright.worker.code import _Output


# -- classify ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("line", "level"),
    [
        # logging's default format and common variants: the prefix wins over any word
        ("ERROR:root:disk full", Level.ERROR),
        ("WARNING:app.db:retrying after an error", Level.WARNING),
        ("INFO:app:no error found", Level.INFO),
        ("DEBUG:urllib3:starting", Level.DEBUG),
        ("CRITICAL:app:down", Level.ERROR),
        ("FATAL: out of disk", Level.ERROR),
        ("WARN: slow query", Level.WARNING),
        ("[ERROR] cannot connect", Level.ERROR),
        ("[WARNING] almost full", Level.WARNING),
        ("ERROR: something failed", Level.ERROR),
        ("2026-11-22 10:00:00,123 ERROR app.db: lost connection", Level.ERROR),
        ("2026-11-22 10:00:00,123 INFO app: 3 errors fixed", Level.INFO),
        # logfmt
        ("ts=1 level=error msg=boom", Level.ERROR),
        ("ts=1 level=WARN msg=slow", Level.WARNING),
        ("ts=1 level=debug msg=x", Level.DEBUG),
        ("ts=1 level=info msg='an error was retried'", Level.INFO),
        # words
        ("Something went wrong: error 42", Level.ERROR),
        ("Unhandled exception in worker", Level.ERROR),
        ("fatal: not a git repository", Level.ERROR),
        ("Error: file not found", Level.ERROR),
        ("warning: the option is deprecated", Level.WARNING),
        ("this API is deprecated", Level.WARNING),
        # neither
        ("copied 10 files", Level.INFO),
        ("0 errors, 0 warnings", Level.INFO),  # plurals are not the words
        ("", Level.INFO),
    ],
)
def test_classify(line: str, level: Level) -> None:
    assert classify(line) == level


@pytest.mark.parametrize(
    "line",
    [
        "/srv/job/main.py:3: DeprecationWarning: load() will be removed, use open()",
        "/srv/job/main.py:9: UserWarning: no rows exported",
        "<stdin>:1: RuntimeWarning: invalid value encountered in divide",
    ],
)
def test_python_warnings_module_lines_are_warnings(line: str) -> None:
    """What `warnings.warn` prints to stderr (one word: DeprecationWarning, UserWarning)."""
    assert classify(line) == Level.WARNING


def test_classify_looks_at_the_start_of_long_lines_only() -> None:
    assert classify("x" * 300 + " error") == Level.INFO
    assert classify("error " + "x" * 300) == Level.ERROR


# -- LevelTracker ------------------------------------------------------------------------
def _traceback_lines() -> list[str]:
    try:
        _fail_deep()
    except KeyError as exc:
        return "".join(traceback.format_exception(exc)).splitlines()
    raise AssertionError("unreachable")


def _fail_deep() -> None:
    values: dict[str, int] = {}
    print(values["missing"])


def _chained() -> list[str]:
    try:
        try:
            _fail_deep()
        except KeyError as exc:
            raise RuntimeError("could not load the settings") from exc
    except RuntimeError as exc:
        return "".join(traceback.format_exception(exc)).splitlines()
    raise AssertionError("unreachable")


def _group() -> list[str]:
    try:
        raise ExceptionGroup("two tasks failed", [ValueError("bad row 3"), OSError("no disk")])
    except ExceptionGroup as exc:
        return "".join(traceback.format_exception(exc)).splitlines()


def test_a_whole_traceback_stays_at_error_and_ends_with_its_exception_line() -> None:
    tracker = LevelTracker()
    lines = ["starting", *_traceback_lines(), "cleaning up", "done"]
    levels = [tracker.level(line) for line in lines]
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-3] == "KeyError: 'missing'"
    assert levels[0] == Level.INFO
    assert levels[1:-2] == [Level.ERROR] * (len(lines) - 3), list(zip(lines, levels, strict=True))
    assert levels[-2:] == [Level.INFO, Level.INFO]


def test_a_chained_traceback_stays_at_error() -> None:
    tracker = LevelTracker()
    lines = _chained()
    assert any(line.startswith("The above exception") for line in lines)
    wrong = [(line, tracker.level(line)) for line in lines]
    wrong = [(line, level) for line, level in wrong if line.strip() and level != Level.ERROR]
    assert wrong == []


def test_a_syntax_error_traceback_stays_at_error() -> None:
    try:
        compile("def broken(:\n    pass\n", "job.py", "exec")
    except SyntaxError as exc:
        lines = "".join(traceback.format_exception(exc)).splitlines()
    tracker = LevelTracker()
    assert [tracker.level(line) for line in ["Traceback (most recent call last):", *lines]] == [
        Level.ERROR
    ] * (len(lines) + 1)


def test_an_exception_group_traceback_stays_at_error() -> None:
    """Python 3.11 prints an ExceptionGroup as '  + Exception Group Traceback ...' with
    '  | ' frames; `runwright logs --level error` must show all of it."""
    tracker = LevelTracker()
    lines = _group()
    levels = [(line, tracker.level(line)) for line in lines]
    assert [line for line, level in levels if level != Level.ERROR] == []


def test_each_stream_has_its_own_traceback_state() -> None:
    stderr, stdout = LevelTracker(), LevelTracker()
    assert stderr.level("Traceback (most recent call last):") == Level.ERROR
    assert stdout.level("  indented progress output") == Level.INFO
    assert stderr.level('  File "main.py", line 3, in <module>') == Level.ERROR


# -- Masker --------------------------------------------------------------------------------
def test_masker_replaces_every_occurrence() -> None:
    mask = Masker(["s3cr3t-value"])
    assert mask("password=s3cr3t-value again s3cr3t-value!") == f"password={MASK} again {MASK}!"
    assert mask("nothing to hide") == "nothing to hide"


def test_masker_prefers_the_longest_secret() -> None:
    mask = Masker(["abcd", "abcdefgh"])
    assert mask("x abcdefgh y abcd") == f"x {MASK} y {MASK}"


def test_masker_escapes_regular_expression_characters() -> None:
    mask = Masker(["p@ss.w*rd(1)+[x]", "a|b"])
    assert mask("use p@ss.w*rd(1)+[x] now") == f"use {MASK} now"
    assert mask("pXss.wrd(1)") == "pXss.wrd(1)"
    assert mask("a|b and ab") == f"{MASK} and ab"


def test_masker_without_secrets_changes_nothing() -> None:
    assert Masker([])("anything") == "anything"
    assert Masker(["", ""])("anything") == "anything"


def test_a_multi_line_secret_is_masked_line_by_line() -> None:
    """Output is captured line by line: a PEM private key printed by the job arrives as
    several lines, none of which equals the whole secret."""
    key = (
        "-----BEGIN PRIVATE KEY-----\n"
        "MIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8wggE7AgEAAkEAq7BFUpkGp3+XQ4G2\n"
        "-----END PRIVATE KEY-----"
    )
    mask = Masker(secret_values({"tls": {"private_key": key}}))
    printed = [mask(line) for line in key.splitlines()]
    assert "MIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8wggE7AgEAAkEAq7BFUpkGp3+XQ4G2" not in printed


secret_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="*\n\r\x00"),
    min_size=1,
    max_size=12,
)
filler = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r\x00"),
    max_size=10,
)


@given(st.lists(secret_text, min_size=1, max_size=5), st.data())
def test_masking_never_leaves_a_secret_in_the_output(
    secrets: list[str], data: st.DataObject
) -> None:
    pieces = data.draw(st.lists(st.sampled_from(secrets) | filler, max_size=12))
    text = "".join(pieces)
    masked = Masker(secrets)(text)
    for secret in secrets:
        assert secret not in masked, (secrets, text, masked)


@given(st.lists(secret_text, min_size=1, max_size=5), filler)
def test_masking_changes_no_text_without_secrets(secrets: list[str], text: str) -> None:
    if not any(secret in text for secret in secrets):
        assert Masker(secrets)(text) == text


# -- the numbering of captured lines -------------------------------------------------------
class _ListSink:
    def __init__(self) -> None:
        self.lines: list[LogLine] = []
        self._lock = threading.Lock()

    def emit(self, line: LogLine) -> None:
        with self._lock:
            self.lines.append(line)


def test_stdout_and_stderr_read_at_once_get_unique_line_numbers(tmp_path: Path) -> None:
    """The executor reads a job's stdout and stderr in two threads that both number lines
    through the same _Output; log_lines has UNIQUE (run_id, seq), so a duplicate number
    makes the whole batch unstorable."""
    sink = _ListSink()
    output = _Output(7, sink, Masker([]), tmp_path / "log.txt")  # type: ignore[arg-type]
    per_stream = 20_000

    def pump(stream: Stream) -> None:
        for i in range(per_stream):
            output.line(stream, f"{stream.value} {i}")

    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, as a busy machine does
    try:
        threads = [threading.Thread(target=pump, args=(s,)) for s in (Stream.STDOUT, Stream.STDERR)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        sys.setswitchinterval(previous)
        output.close()
    assert len(sink.lines) == 2 * per_stream
    duplicated = sorted(seq for seq, n in Counter(x.seq for x in sink.lines).items() if n > 1)
    assert duplicated == [], f"{len(duplicated)} duplicated line numbers, e.g. {duplicated[:5]}"
    assert sorted(x.seq for x in sink.lines) == list(range(1, 2 * per_stream + 1))
