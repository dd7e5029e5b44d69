"""Task module for the worker processes of the exactly-once test (``--tasks``).

Each execution appends ``run_id pid attempt`` to the ledger file named by the payload,
with one ``os.write`` on an ``O_APPEND`` descriptor: small appends are atomic, so lines
of concurrent processes never interleave.
"""

from __future__ import annotations

import os

from runwright.worker.context import TaskContext
from runwright.worker.registry import task

TYPE = "test.ledger"


@task(TYPE)
def record(ctx: TaskContext) -> dict[str, int]:
    """Append this execution to the ledger."""
    line = f"{ctx.run_id} {os.getpid()} {ctx.attempt}\n".encode()
    fd = os.open(ctx.payload["ledger"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    return {"pid": os.getpid()}
