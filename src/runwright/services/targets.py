"""Targets: the hosts jobs run on. Add, change, list and remove them, import many from
CSV or JSON, and what a worker asks of the inventory (select by tag, trust on first use
of a host key)."""

from __future__ import annotations

import builtins
import csv
import io
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncssh

from runwright.db.targets import TARGET_DEFAULTS, TargetRepository
from runwright.errors import Conflict, InvalidRequest, NotFound
from runwright.model.targets import DRIVERS, Target, check_name, check_tags, select

FIELDS = ("name", "address", "port", "driver", "tags", "vars", "enabled", "host_key", "description")
MAX_IMPORT_ROWS = 10_000
MAX_VARS_BYTES = 64 * 1024
MAX_DESCRIPTION = 1000
ADDRESS = re.compile(r"^[A-Za-z0-9._:%\[\]-]{1,255}$")
TRUE = frozenset({"true", "yes", "y", "1", "on"})
FALSE = frozenset({"false", "no", "n", "0", "off"})


class InvalidField(InvalidRequest):
    """Input the caller must fix, in one named field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


# -- checking fields -----------------------------------------------------------------------
def _text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidField(name, f"{name} must be text, got {type(value).__name__}.")
    return value.strip()


def _name(value: Any) -> str:
    try:
        return check_name(_text("name", value), "Target")
    except ValueError as exc:
        raise InvalidField("name", str(exc)) from exc


def _address(value: Any) -> str:
    address = _text("address", value)
    if not ADDRESS.match(address):
        raise InvalidField(
            "address",
            f"address {address!r} is not valid: give a host name or an IP address "
            "(up to 255 characters, no spaces; the user name belongs to a credential).",
        )
    return address


def _port(value: Any) -> int:
    number: Any = value
    if isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= 65535:
        raise InvalidField("port", f"port {value!r} is not valid: use a number from 1 to 65535.")
    return number


def _driver(value: Any) -> str:
    driver = _text("driver", value).lower()
    if driver not in DRIVERS:
        raise InvalidField(
            "driver",
            f"driver {value!r} is not known: use ssh (a remote host) or local (this worker).",
        )
    return driver


def split_tag_text(text: str) -> builtins.list[str]:
    """``"web, db"`` or ``"web db"`` -> ``["web", "db"]``."""
    return [part for part in re.split(r"[,\s]+", text) if part]


def _tags(value: Any) -> builtins.list[str]:
    items: Any = split_tag_text(value) if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise InvalidField("tags", "tags must be a list of text (or one text, comma-separated).")
    try:
        return builtins.list(check_tags(items))
    except ValueError as exc:
        raise InvalidField("tags", str(exc)) from exc


def _vars(value: Any) -> dict[str, Any]:
    data: Any = value
    if isinstance(value, str):
        try:
            data = json.loads(value)
        except ValueError as exc:
            raise InvalidField(
                "vars", f'vars is not valid JSON ({exc}); write an object like {{"rack": 4}}.'
            ) from exc
    if not isinstance(data, dict):
        raise InvalidField("vars", 'vars must be a JSON object, like {"rack": 4}.')
    try:
        size = len(json.dumps(data, allow_nan=False).encode())
    except (TypeError, ValueError) as exc:
        raise InvalidField("vars", f"vars must hold JSON values only: {exc}.") from exc
    if size > MAX_VARS_BYTES:
        raise InvalidField(
            "vars", f"vars is {size:,} bytes; the limit is {MAX_VARS_BYTES:,}. Keep less in it."
        )
    return data


def _enabled(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in TRUE | FALSE:
        return value.strip().lower() in TRUE
    raise InvalidField("enabled", f"enabled must be true or false, got {value!r}.")


def check_host_key(value: str) -> str:
    """A public key line (``ssh-ed25519 AAAA... comment``), normalised to ``ALG BASE64``."""
    text = value.strip()
    if "PRIVATE KEY" in text:  # asyncssh would derive the public key from it
        raise InvalidField(
            "host_key",
            "host_key is a private key: give the host's public key instead (a line like "
            "'ssh-ed25519 AAAA...'), and keep the private key off this system.",
        )
    try:
        key = asyncssh.import_public_key(text)
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise InvalidField(
            "host_key",
            "host_key is not an SSH public key: give one line like 'ssh-ed25519 AAAA...', "
            "from /etc/ssh/ssh_host_ed25519_key.pub on the host or `ssh-keyscan -t ed25519 "
            "HOST` (without the host name in front).",
        ) from exc
    algorithm, data = key.export_public_key("openssh").decode("ascii").split()[:2]
    return f"{algorithm} {data}"


def _host_key(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return check_host_key(_text("host_key", value))


def _description(value: Any) -> str:
    text = _text("description", value)
    if len(text) > MAX_DESCRIPTION:
        raise InvalidField(
            "description", f"description is {len(text):,} characters; the limit is 1,000."
        )
    return text


CHECKS = {
    "address": _address,
    "port": _port,
    "driver": _driver,
    "tags": _tags,
    "vars": _vars,
    "enabled": _enabled,
    "host_key": _host_key,
    "description": _description,
}


def check_fields(given: Mapping[str, Any], *, null_is_default: bool) -> dict[str, Any]:
    """The target fields in ``given`` (without ``name``), checked and cleaned. A null
    value takes the field's default when ``null_is_default``, else it is refused, except
    ``host_key``, where null removes the pin."""
    cleaned: dict[str, Any] = {}
    for key, value in given.items():
        if key == "name":
            continue
        if key not in CHECKS:
            raise InvalidField(
                key, f"{key!r} is not a target field; the fields are {', '.join(FIELDS)}."
            )
        if value is None and key != "host_key":
            if not null_is_default:
                raise InvalidField(key, f"{key} cannot be null; leave it out to keep it.")
            if key == "address":
                raise InvalidField("address", "address is required: a host name or IP address.")
            cleaned[key] = TARGET_DEFAULTS[key]
            continue
        cleaned[key] = CHECKS[key](value)
    return cleaned


def check_new(given: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """A whole new target: name and address are required."""
    if given.get("name") in (None, ""):
        raise InvalidField("name", "name is required: how jobs and people refer to the target.")
    name = _name(given["name"])
    if given.get("address") in (None, ""):
        raise InvalidField("address", "address is required: a host name or IP address.")
    return name, check_fields(given, null_is_default=True)


# -- import --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RowResult:
    row: int  # CSV: the line the record starts on (the header is line 1); JSON: 1-based
    name: str | None
    status: str  # created, updated or refused
    field: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ImportReport:
    rows: builtins.list[RowResult] = field(default_factory=builtins.list)
    dry_run: bool = False

    def count(self, status: str) -> int:
        return sum(1 for row in self.rows if row.status == status)

    @property
    def created(self) -> int:
        return self.count("created")

    @property
    def updated(self) -> int:
        return self.count("updated")

    @property
    def refused(self) -> int:
        return self.count("refused")


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A record the parser could not turn into fields."""

    reason: str


Row = tuple[int, Any]  # (row number, what the file holds there: an object or Unreadable)
# What GET /api/targets adds to a target: ignored by an import, so its output imports.
READ_ONLY = frozenset({"id", "known_host_key", "created_at", "updated_at"})


def parse_csv(text: str) -> builtins.list[Row]:
    """Records of a CSV file with a header line, as (line, {column: cell}); empty cells
    are null (the field's default)."""
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff")), strict=True)
    try:
        header = next(reader, None)
        while header is not None and not any(cell.strip() for cell in header):
            header = next(reader, None)
        if header is None:
            raise InvalidRequest(f"The CSV file is empty: start it with a header line: {_cols()}.")
        columns = [cell.strip().lower() for cell in header]
        for column in columns:
            if column not in FIELDS:
                raise InvalidRequest(
                    f"CSV column {column!r} is not known; the columns are {_cols()}."
                )
        for needed in ("name", "address"):
            if needed not in columns:
                raise InvalidRequest(f"The CSV file has no {needed!r} column; it needs one.")
        if len(set(columns)) != len(columns):
            raise InvalidRequest("A CSV column appears twice in the header line; keep one.")
        rows: builtins.list[Row] = []
        start = reader.line_num + 1
        for cells in reader:
            line, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) > len(columns):
                reason = f"line {line} has {len(cells)} cells, more than the header's columns."
                rows.append((line, Unreadable(reason)))
                continue
            cells += [""] * (len(columns) - len(cells))  # a short record: empty cells
            record = {
                column: (cell if cell.strip() else None)
                for column, cell in zip(columns, cells, strict=True)
            }
            rows.append((line, record))
    except csv.Error as exc:
        raise InvalidRequest(
            f"The CSV file cannot be read at line {reader.line_num}: {exc}."
        ) from exc
    return rows


def _cols() -> str:
    return ",".join(FIELDS)


def parse_json_rows(text: str) -> builtins.list[Row]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InvalidRequest(f"The JSON file is not valid JSON: {exc}.") from exc
    if not isinstance(data, list):
        raise InvalidRequest(
            'The JSON file must hold a list of targets: [{"name": "web-1", "address": ...}].'
        )
    return [(number, item) for number, item in enumerate(data, 1)]


def _refusal(number: int, raw: Any, failure: InvalidField) -> RowResult:
    name = raw.get("name") if isinstance(raw, dict) else None
    return RowResult(
        number,
        name if isinstance(name, str) else None,
        "refused",
        failure.field,
        failure.message,
    )


def _missing(name: str) -> NotFound:
    return NotFound(f"Target {name!r} does not exist; list targets with `runwright target list`.")


class TargetService:
    def __init__(self, *, targets: TargetRepository) -> None:
        self._targets = targets

    # -- one target ------------------------------------------------------------------------
    def create(self, given: Mapping[str, Any]) -> Target:
        name, values = check_new(given)
        target = self._targets.create(name, values, time.time())
        if target is None:
            raise Conflict(
                f"Target {name!r} already exists; change it with `runwright target update "
                f"{name}` (PATCH /api/targets/{name})."
            )
        return target

    def get(self, name: str) -> Target:
        target = self._targets.get(name)
        if target is None:
            raise _missing(name)
        return target

    def list(self, tag: str | None = None) -> builtins.list[Target]:
        found = self._targets.list()
        if tag is None:
            return found
        try:
            wanted = check_tags([tag])
        except ValueError as exc:
            raise InvalidField("tag", str(exc)) from exc
        return [target for target in found if set(wanted) <= set(target.tags)]

    def update(self, name: str, given: Mapping[str, Any]) -> Target:
        if "name" in given and given["name"] != name:
            raise InvalidField(
                "name",
                "A target cannot be renamed; add one with the new name and remove the old one.",
            )
        values = check_fields(given, null_is_default=False)
        target = self._targets.update(name, values, time.time())
        if target is None:
            raise _missing(name)
        return target

    def delete(self, name: str) -> None:
        if not self._targets.delete(name):
            raise _missing(name)

    def forget_host_key(self, name: str) -> Target:
        """Forget the recorded host key (after the host was rebuilt): the next successful
        connection records the new one."""
        target = self._targets.forget_host_key(name, time.time())
        if target is None:
            raise _missing(name)
        return target

    # -- many ------------------------------------------------------------------------------
    def import_text(self, text: str, kind: str, *, dry_run: bool = False) -> ImportReport:
        """Import a CSV (``kind="csv"``) or JSON (``kind="json"``) file."""
        if kind == "csv":
            rows = parse_csv(text)
        elif kind == "json":
            rows = parse_json_rows(text)
        else:
            raise InvalidRequest(f"Import format {kind!r} is not known: use csv or json.")
        return self.import_rows(rows, dry_run=dry_run)

    def import_rows(self, rows: Sequence[Row], *, dry_run: bool = False) -> ImportReport:
        """Create or update a target per row. A refused row changes nothing; the others
        are stored together. A field a row leaves out keeps its value on an existing
        target and takes its default on a new one; a null (an empty cell) is the default."""
        if len(rows) > MAX_IMPORT_ROWS:
            raise InvalidRequest(
                f"The file has {len(rows):,} targets; the limit is {MAX_IMPORT_ROWS:,} per "
                "import. Split it into several files."
            )
        results: dict[int, RowResult] = {}
        accepted: builtins.list[tuple[int, str, dict[str, Any]]] = []
        seen: dict[str, int] = {}
        for index, (number, raw) in enumerate(rows):
            try:
                name, values = self._check_row(number, raw, seen)
            except InvalidField as failure:
                results[index] = _refusal(number, raw, failure)
                continue
            seen[name] = number
            accepted.append((index, name, values))
        batch = [(name, values) for _, name, values in accepted]
        if dry_run:
            existing = self._targets.existing([name for name, _ in batch])
            created = {name for name, _ in batch} - existing
        else:
            created = self._targets.put_many(batch, time.time()) if batch else set()
        for index, name, _ in accepted:
            status = "created" if name in created else "updated"
            results[index] = RowResult(rows[index][0], name, status)
        return ImportReport([results[i] for i in range(len(rows))], dry_run=dry_run)

    @staticmethod
    def _check_row(number: int, raw: Any, seen: Mapping[str, int]) -> tuple[str, dict[str, Any]]:
        if isinstance(raw, Unreadable):
            raise InvalidField("row", raw.reason)
        if not isinstance(raw, dict):
            raise InvalidField("row", f"item {number} is not an object with target fields.")
        name, values = check_new({k: v for k, v in raw.items() if k not in READ_ONLY})
        if name in seen:
            raise InvalidField(
                "name", f"target {name!r} is already in row {seen[name]}; give each name once."
            )
        return name, values

    # -- what workers ask ------------------------------------------------------------------
    def select(self, tags: Sequence[str]) -> builtins.list[Target]:
        """The enabled targets with any of these tags, by name."""
        return select(self._targets.list(enabled_only=True), tags)

    def record_host_key(self, target_id: int, key: str) -> None:
        """Record the host key seen on the first successful connection (trust on first
        use); a key already recorded stays."""
        self._targets.record_host_key(target_id, key)
