"""Saving and loading the job context of a multi-step run in the artifact store."""

from __future__ import annotations

import json
from typing import Any

from runwright.artifacts.base import ArtifactStore
from runwright.artifacts.keys import context_key
from runwright.errors import InvalidRequest, NotFound, ObjectNotFound
from runwright.model.context import MASK, JobContext, mask_values


def masked_json(
    context: JobContext, sensitive_names: frozenset[str], secrets: set[str]
) -> dict[str, Any]:
    """The context as saved and shown: sensitive variables and their values masked."""
    data = context.to_json()
    data["variables"] = {
        name: MASK if name in sensitive_names else value
        for name, value in data["variables"].items()
    }
    masked: dict[str, Any] = mask_values(data, secrets)
    return masked


class ContextStore:
    def __init__(self, store: ArtifactStore) -> None:
        self._store = store

    def save(
        self,
        context: JobContext,
        *,
        sensitive_names: frozenset[str] = frozenset(),
        secrets: set[str] | None = None,
    ) -> int:
        """Write the context (masked); returns its size in bytes."""
        data = json.dumps(
            masked_json(context, sensitive_names, secrets or set()),
            separators=(",", ":"),
            default=str,
        ).encode()
        self._store.put(context_key(context.job_id, context.execution_id), data)
        return len(data)

    def load(self, job_id: int, run_id: int, *, job: str = "") -> JobContext:
        named = f"run {run_id} of job {job or job_id}"
        key = context_key(job_id, run_id)
        try:
            raw = self._store.get(key)
        except ObjectNotFound as exc:
            raise NotFound(
                f"There is no saved context for {named} (looked for {key}): the run has not "
                "started its steps yet, or its context was purged."
            ) from exc
        try:
            return JobContext.from_json(json.loads(raw))
        except ValueError as exc:
            raise InvalidRequest(f"The saved context of {named} is not valid JSON: {exc}") from exc
        except InvalidRequest as exc:
            raise InvalidRequest(
                f"The saved context of {named} is unreadable: {exc.message}"
            ) from exc
