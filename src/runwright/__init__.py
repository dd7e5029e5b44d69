"""runwright: your code as versioned, scheduled, observable jobs.

Public names::

    from runwright import Client, task, TaskContext, Retry, Cancelled
"""

from __future__ import annotations

from runwright.client import Client
from runwright.errors import Cancelled, Retry, RunwrightError
from runwright.worker.context import TaskContext
from runwright.worker.registry import task

__version__ = "0.1.0"

__all__ = ["Cancelled", "Client", "Retry", "RunwrightError", "TaskContext", "__version__", "task"]
