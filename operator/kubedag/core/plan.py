"""The decision, as data: what the shell must do after one reconcile of a run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kubedag.api import PipelineRunStatus


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str  # CamelCase, from kubedag.core.reasons
    message: str


@dataclass
class Plan:
    status: PipelineRunStatus
    create_jobs: list[dict[str, Any]] = field(default_factory=list)
    delete_jobs: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    # Reconcile again after this many seconds (a retry backoff, a deadline), even with no event.
    requeue_after: float | None = None
    # dryRun: create the Jobs with server-side dry run and report per stage (see dry_run.py).
    dry_run: bool = False
    delete_run: bool = False  # ttlSecondsAfterFinished has passed
