"""Variables: set, list and delete them; resolve the set a job's run sees.

A variable is global or belongs to one job; for a run the job's variable wins over
a global one of the same name. Sensitive values are encrypted at rest and never
returned by the API or the CLI; runs see them, and logs and the saved context mask
them.
"""

from __future__ import annotations

import builtins
import json
import re
import time
from dataclasses import dataclass
from typing import Any

from runwright.db.jobs import JobRepository
from runwright.db.variables import GLOBAL, StoredVariable, VariableRepository
from runwright.errors import InvalidRequest, NotFound
from runwright.services.secrets import SecretBox

VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
MAX_VALUE_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class VariableInfo:
    """A variable as the API and CLI show it: a sensitive value is never shown."""

    name: str
    job: str | None
    value: Any  # None when sensitive
    sensitive: bool
    description: str
    updated_at: float


@dataclass(frozen=True, slots=True)
class ResolvedVariables:
    values: dict[str, Any]
    sensitive: frozenset[str]  # names

    def secrets(self) -> set[str]:
        """The sensitive values as text, for masking: each whole value and every
        string or number inside an object or list (``{{ variables.creds.password }}``
        must be masked too). Very short ones would mask noise."""
        found: set[str] = set()

        def add(value: Any) -> None:
            if isinstance(value, dict):
                for item in value.values():
                    add(item)
            elif isinstance(value, list):
                for item in value:
                    add(item)
            elif value is not None and not isinstance(value, bool):
                text = str(value)
                if len(text) >= 3:
                    found.add(text)

        for name in self.sensitive:
            value = self.values.get(name)
            add(value)
            if isinstance(value, dict | list):
                found.add(json.dumps(value))
        return found


def check_variable_name(name: str) -> str:
    if not VARIABLE_NAME.match(name):
        raise InvalidRequest(
            f"Variable name {name!r} is not valid: use letters, digits and '_', starting "
            "with a letter or '_' (it is used as {{ variables.NAME }})."
        )
    return name


class VariableService:
    def __init__(self, *, variables: VariableRepository, jobs: JobRepository, box: SecretBox):
        self._variables = variables
        self._jobs = jobs
        self._box = box

    def _job_id(self, job: str | None) -> int:
        if job is None:
            return GLOBAL
        found = self._jobs.get(job)
        if found is None:
            raise NotFound(f"Job {job!r} does not exist; list jobs with `runwright job list`.")
        return found.id

    def set(
        self,
        name: str,
        value: Any,
        *,
        job: str | None = None,
        sensitive: bool = False,
        description: str = "",
    ) -> VariableInfo:
        check_variable_name(name)
        try:
            text = json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidRequest(f"Variable {name!r} needs a JSON value: {exc}") from exc
        if len(text.encode()) > MAX_VALUE_BYTES:
            raise InvalidRequest(
                f"Variable {name!r} is {len(text.encode()):,} bytes; the limit is "
                f"{MAX_VALUE_BYTES:,}. Keep large data in files."
            )
        stored = self._box.encrypt(text) if sensitive else text
        job_id = self._job_id(job)
        now = time.time()
        self._variables.set(
            job_id, name, stored, sensitive=sensitive, description=description, now=now
        )
        return VariableInfo(name, job, None if sensitive else value, sensitive, description, now)

    def delete(self, name: str, *, job: str | None = None) -> None:
        scope = f"job {job!r}" if job else "global"
        if not self._variables.delete(self._job_id(job), name):
            raise NotFound(
                f"There is no {scope} variable {name!r}; list them with `runwright var list`."
            )

    def list(self, *, job: str | None = None) -> builtins.list[VariableInfo]:
        """All variables, or those a job sees (its own and the global ones)."""
        job_ids = None if job is None else [GLOBAL, self._job_id(job)]
        stored = self._variables.list(job_ids)
        names = {j.id: j.name for j in [*self._jobs.list(), *self._jobs.list(archived=True)]}
        return [
            VariableInfo(
                v.name,
                names.get(v.job_id) if v.job_id != GLOBAL else None,
                None if v.sensitive else json.loads(v.value),
                v.sensitive,
                v.description,
                v.updated_at,
            )
            for v in stored
        ]

    def resolve(self, job_id: int) -> ResolvedVariables:
        """What a run of this job sees: global variables, then the job's over them."""
        values: dict[str, Any] = {}
        sensitive: set[str] = set()
        ordered = sorted(self._variables.list([GLOBAL, job_id]), key=lambda v: v.job_id != GLOBAL)
        for variable in ordered:
            values[variable.name] = self._decode(variable)
            if variable.sensitive:
                sensitive.add(variable.name)
            else:
                sensitive.discard(variable.name)
        return ResolvedVariables(values, frozenset(sensitive))

    def _decode(self, variable: StoredVariable) -> Any:
        text = self._box.decrypt(variable.value) if variable.sensitive else variable.value
        return json.loads(text)
