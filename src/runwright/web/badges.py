"""How every status and outcome looks: a label, a colour (a CSS class) and a hint.

One table for the run statuses, the outcomes, the target statuses and the step
statuses, so that a value looks the same on every page. The tests check that no
enum value is missing here: a new outcome without a badge would render as raw text.
"""

from __future__ import annotations

from dataclasses import dataclass

from runwright.model.context import StepStatus
from runwright.model.states import Outcome, RunStatus
from runwright.model.targets import TargetStatus


@dataclass(frozen=True, slots=True)
class Badge:
    label: str
    tone: str  # a CSS modifier: ok, bad, warn, info, muted, live, purple, orange
    icon: str
    hint: str


RUN_STATUS: dict[str, Badge] = {
    RunStatus.QUEUED: Badge("Queued", "muted", "◷", "Waiting for a worker."),
    RunStatus.RUNNING: Badge("Running", "live", "●", "A worker is executing it now."),
    RunStatus.SUCCEEDED: Badge("Succeeded", "ok", "✓", "Finished without error."),
    RunStatus.FAILED: Badge("Failed", "bad", "✕", "Finished with an error; see the console."),
    RunStatus.CANCELED: Badge("Canceled", "muted", "⊘", "Stopped on request."),
}

OUTCOME: dict[str, Badge] = {
    Outcome.ERROR: Badge("Error", "bad", "!", "The code raised an error or exited non-zero."),
    Outcome.DEAD_LETTER: Badge(
        "Dead letter", "purple", "☠", "Every attempt failed; retry it once the cause is fixed."
    ),
    Outcome.TIMED_OUT: Badge("Timed out", "orange", "⏱", "It ran longer than its timeout."),
    Outcome.WORKER_LOST: Badge(
        "Worker lost", "orange", "⚡", "The worker stopped answering while it ran."
    ),
    Outcome.CANCELED: Badge("Canceled", "muted", "⊘", "Stopped on request."),
    Outcome.KILLED: Badge("Killed", "bad", "☇", "Its process was ended by a signal."),
    Outcome.OUT_OF_MEMORY: Badge(
        "Out of memory", "bad", "▦", "Its process ran out of memory; give it less data or more."
    ),
    Outcome.COMPLETED_SUCCESS: Badge("All targets OK", "ok", "✓", "Every target succeeded."),
    Outcome.COMPLETED_PARTIAL_FAILURE: Badge(
        "Some targets failed", "warn", "◐", "Some targets failed; see the targets table."
    ),
    Outcome.COMPLETED_FAILURE: Badge(
        "All targets failed", "bad", "✕", "No target succeeded; see the targets table."
    ),
    Outcome.COMPLETED_NO_TARGETS: Badge(
        "No targets", "warn", "∅", "No enabled target has the job's tags; check the tags."
    ),
    Outcome.COMPLETED_NO_CREDENTIALS: Badge(
        "No credentials", "warn", "⚿", "No credential shares a tag with the targets."
    ),
    Outcome.FAILED_CREDENTIAL_RESOLUTION: Badge(
        "Credentials unreadable",
        "bad",
        "⚿",
        "Credentials could not be resolved or decrypted; check the secret key.",
    ),
    Outcome.FAILED_UNEXPECTED: Badge(
        "Unexpected failure", "bad", "?", "runwright failed unexpectedly; see the server log."
    ),
}

TARGET_STATUS: dict[str, Badge] = {
    TargetStatus.PENDING: Badge("Pending", "muted", "◷", "Not started yet."),
    TargetStatus.RUNNING: Badge("Running", "live", "●", "Working on this target now."),
    TargetStatus.SUCCEEDED: Badge("Succeeded", "ok", "✓", "The work succeeded here."),
    TargetStatus.FAILED: Badge("Failed", "bad", "✕", "The work failed here; see its error."),
    TargetStatus.NO_CREDENTIALS: Badge(
        "No credentials", "warn", "⚿", "No credential shares a tag with this target."
    ),
    TargetStatus.CANCELED: Badge("Canceled", "muted", "⊘", "Stopped before it finished."),
}

STEP_STATUS: dict[str, Badge] = {
    StepStatus.PENDING: Badge("Pending", "muted", "◷", "Not started yet."),
    StepStatus.RUNNING: Badge("Running", "live", "●", "Running now."),
    StepStatus.SUCCEEDED: Badge("Succeeded", "ok", "✓", "Done."),
    StepStatus.FAILED: Badge("Failed", "bad", "✕", "Failed; see its error."),
    StepStatus.SKIPPED: Badge("Skipped", "muted", "↷", "Skipped by its condition or a resume."),
    StepStatus.TIMED_OUT: Badge("Timed out", "orange", "⏱", "Ran longer than its timeout."),
    StepStatus.CANCELED: Badge("Canceled", "muted", "⊘", "Stopped on request."),
}

TABLES = {
    "run": RUN_STATUS,
    "outcome": OUTCOME,
    "target": TARGET_STATUS,
    "step": STEP_STATUS,
}


def badge(value: str | None, kind: str = "run") -> Badge | None:
    """The badge of ``value`` (a status or outcome); an unknown value gets a neutral one
    with the raw text, so that a newer server value still shows."""
    if value is None:
        return None
    table = TABLES.get(kind, RUN_STATUS)
    found = table.get(value) or OUTCOME.get(value) or RUN_STATUS.get(value)
    return found or Badge(value.replace("_", " ").capitalize(), "muted", "•", value)
