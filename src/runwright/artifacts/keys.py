"""Where each kind of artifact lives in the store: the key layout, in one place.

::

    jobs/{job_id}/packages/{sha256}.zip
    jobs/{job_id}/executions/{run_id}/context.json
    jobs/{job_id}/executions/{run_id}/output/{filename}
    jobs/{job_id}/executions/{run_id}/log.txt
"""

from __future__ import annotations

import re

from runwright.artifacts.base import validate_key
from runwright.errors import StoreError

_SHA256 = re.compile(r"[0-9a-f]{64}")


def _segment(name: str, value: int | str) -> str:
    text = str(value)
    if isinstance(value, bool) or not text or "/" in text or text in {".", ".."}:
        raise StoreError(f"Invalid {name} {value!r} for an artifact key.")
    return text


def job_prefix(job_id: int | str) -> str:
    """Prefix of every artifact of a job (for ``list`` and cleanup)."""
    return f"jobs/{_segment('job id', job_id)}/"


def execution_prefix(job_id: int | str, run_id: int | str) -> str:
    """Prefix of every artifact of one run of a job."""
    return f"{job_prefix(job_id)}executions/{_segment('run id', run_id)}/"


def package_key(job_id: int | str, sha256: str) -> str:
    if not _SHA256.fullmatch(sha256):
        raise StoreError(f"Invalid package sha256 {sha256!r}: expected 64 lowercase hex digits.")
    return validate_key(f"{job_prefix(job_id)}packages/{sha256}.zip")


def context_key(job_id: int | str, run_id: int | str) -> str:
    return validate_key(f"{execution_prefix(job_id, run_id)}context.json")


def output_key(job_id: int | str, run_id: int | str, filename: str) -> str:
    """``filename`` may name a file in a subfolder (``reports/summary.csv``)."""
    return validate_key(f"{execution_prefix(job_id, run_id)}output/{filename}")


def log_key(job_id: int | str, run_id: int | str) -> str:
    return validate_key(f"{execution_prefix(job_id, run_id)}log.txt")
