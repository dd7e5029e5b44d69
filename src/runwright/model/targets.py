"""Targets and credentials: the inventory, which credentials fit which host, and what a
run that worked on many hosts amounts to. Pure: no I/O here."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from runwright.model.states import Outcome, RunStatus

DRIVERS = ("ssh", "local")
CREDENTIAL_KINDS = ("password", "key")
MASK = "********"
TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:-]{0,199}$")


class TargetStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    NO_CREDENTIALS = "no_credentials"  # matched, but no credential shares a tag with it
    CANCELED = "canceled"


class ErrorType(StrEnum):
    """What went wrong on one target, in words an operator acts on."""

    AUTH = "auth"  # every candidate credential was refused
    CONNECTION = "connection"  # refused, unreachable, reset
    TIMEOUT = "timeout"  # connecting or the command took too long
    HOST_KEY = "host_key"  # the host's key differs from the pinned or recorded one
    COMMAND = "command"  # the work ran and failed (non-zero exit status)
    CREDENTIAL = "credential"  # resolving or decrypting credentials failed
    UNEXPECTED = "unexpected"


def check_tags(tags: Iterable[str], what: str = "tag") -> tuple[str, ...]:
    cleaned: list[str] = []
    for tag in tags:
        tag = tag.strip()
        if not tag:
            continue
        if not TAG.match(tag):
            raise ValueError(
                f"{what} {tag!r} is not valid: use 1 to 100 letters, digits, '.', '_', ':' or "
                "'-', starting with a letter or digit."
            )
        if tag not in cleaned:
            cleaned.append(tag)
    return tuple(cleaned)


def split_tags(text: str) -> tuple[str, ...]:
    """``"web, db"`` -> ``("web", "db")``."""
    return check_tags(text.split(","))


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    id: int
    name: str
    address: str
    port: int = 22
    driver: str = "ssh"
    tags: tuple[str, ...] = ()
    vars: dict[str, Any] = field(default_factory=dict)
    enabled: bool = True
    host_key: str | None = None  # pinned by the operator
    known_host_key: str | None = None  # recorded on first use
    description: str = ""
    created_at: float | None = None
    updated_at: float | None = None

    def public(self) -> dict[str, Any]:
        """What a job sees of its target."""
        return {
            "id": self.id,
            "name": self.name,
            "address": self.address,
            "port": self.port,
            "driver": self.driver,
            "tags": list(self.tags),
            "vars": dict(self.vars),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Credential:
    """A credential without its secret part: safe to list and show."""

    id: int
    name: str
    username: str
    kind: str  # password or key
    priority: int = 100
    tags: tuple[str, ...] = ()
    description: str = ""
    created_at: float | None = None
    updated_at: float | None = None
    last_used_at: float | None = None
    successes: int = 0
    failures: int = 0

    @property
    def success_rate(self) -> float | None:
        total = self.successes + self.failures
        return None if total == 0 else self.successes / total


@dataclass(frozen=True, slots=True)
class SecretPart:
    """The secret part of a credential. Its repr and str are masked, so that logging
    or printing it (or an object holding it) shows no secret."""

    password: str | None = None
    private_key: str | None = None
    passphrase: str | None = None

    def __repr__(self) -> str:
        return f"SecretPart({MASK})"

    __str__ = __repr__

    def values(self) -> list[str]:
        """The secret strings, for masking them in output."""
        return [v for v in (self.password, self.private_key, self.passphrase) if v]


@dataclass(frozen=True, slots=True)
class UnlockedCredential:
    info: Credential
    secret: SecretPart

    def __repr__(self) -> str:
        return f"UnlockedCredential(name={self.info.name!r}, username={self.info.username!r})"

    def for_job(self) -> dict[str, str | None]:
        """What job code receives as ``sdk.credential`` (secrets included)."""
        return {
            "name": self.info.name,
            "username": self.info.username,
            "password": self.secret.password,
            "private_key": self.secret.private_key,
            "passphrase": self.secret.passphrase,
        }

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class Candidates:
    target: Target
    credentials: tuple[Credential, ...]  # in the order to try them


@dataclass(frozen=True, slots=True)
class Resolution:
    resolved: tuple[Candidates, ...]
    unresolved: tuple[Target, ...]  # no credential shares a tag with them

    @property
    def matched(self) -> int:
        return len(self.resolved) + len(self.unresolved)

    def summary(self) -> str:
        total = self.matched
        share = 100.0 * len(self.resolved) / total if total else 0.0
        return f"Resolved credentials for {len(self.resolved)}/{total} targets ({share:.0f}%)"


def select(targets: Iterable[Target], tags: Sequence[str]) -> list[Target]:
    """The enabled targets sharing at least one tag with ``tags``, by name."""
    wanted = set(tags)
    return sorted(
        (t for t in targets if t.enabled and wanted.intersection(t.tags)), key=lambda t: t.name
    )


def resolve(targets: Iterable[Target], credentials: Iterable[Credential]) -> Resolution:
    """For each target, the credentials sharing at least one tag with it, lowest
    priority number first, then by name; and the targets that have none."""
    ordered = sorted(credentials, key=lambda c: (c.priority, c.name))
    resolved: list[Candidates] = []
    unresolved: list[Target] = []
    for target in targets:
        tags = set(target.tags)
        fitting = tuple(c for c in ordered if tags.intersection(c.tags))
        if fitting:
            resolved.append(Candidates(target, fitting))
        else:
            unresolved.append(target)
    return Resolution(tuple(resolved), tuple(unresolved))


class TargetSelector(BaseModel):
    """``targets: {tags: [...], max_parallel: N}`` in a step, a package's
    runwright.toml or a run's request."""

    model_config = ConfigDict(extra="forbid")

    tags: list[str] = Field(min_length=1, description="Targets with any of these tags.")
    max_parallel: int = Field(default=10, ge=1, le=1000, description="Targets at once.")

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        cleaned = list(check_tags(value))
        if not cleaned:
            raise ValueError("give at least one tag")
        return cleaned


def override(base: TargetSelector | None, given: dict[str, Any] | None) -> TargetSelector | None:
    """A run's ``targets`` over the job's: the fields the run gives win."""
    if not given:
        return base
    merged: dict[str, Any] = base.model_dump() if base is not None else {}
    merged.update({k: v for k, v in given.items() if v is not None})
    return TargetSelector.model_validate(merged)


@dataclass(frozen=True, slots=True)
class Verdict:
    status: RunStatus
    outcome: Outcome
    message: str


def judge(resolution: Resolution, statuses: Sequence[str]) -> Verdict:
    """The run's outcome from its targets' statuses (those that were dispatched)."""
    if resolution.matched == 0:
        return Verdict(
            RunStatus.SUCCEEDED,
            Outcome.COMPLETED_NO_TARGETS,
            "No enabled target has any of the selected tags; nothing to do.",
        )
    if not resolution.resolved:
        return Verdict(
            RunStatus.FAILED,
            Outcome.COMPLETED_NO_CREDENTIALS,
            f"{resolution.matched} target(s) matched but no credential shares a tag with any "
            "of them: add one with `runwright credential add --tags ...`.",
        )
    ok = sum(1 for s in statuses if s == TargetStatus.SUCCEEDED)
    total = resolution.matched
    if ok == total:
        return Verdict(
            RunStatus.SUCCEEDED, Outcome.COMPLETED_SUCCESS, f"All {total} target(s) succeeded."
        )
    if ok == 0:
        return Verdict(
            RunStatus.FAILED, Outcome.COMPLETED_FAILURE, f"All {total} target(s) failed."
        )
    return Verdict(
        RunStatus.FAILED,
        Outcome.COMPLETED_PARTIAL_FAILURE,
        f"{total - ok} of {total} target(s) failed; {ok} succeeded.",
    )


def summarize_output(text: str, lines: int = 20, chars: int = 4000) -> str:
    """The end of a target's output: what a results table shows."""
    tail = "\n".join(text.rstrip("\n").splitlines()[-lines:])
    return tail[-chars:]


def check_name(name: str, what: str) -> str:
    if not NAME.match(name):
        raise ValueError(
            f"{what} name {name!r} is not valid: use 1 to 200 letters, digits, '.', '_', '@', "
            "':' or '-', starting with a letter or digit."
        )
    return name
