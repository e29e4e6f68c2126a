"""The decision, as data: what the shell must do after one reconcile of a run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kubedag.api import PipelineRunStatus


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str  # CamelCase, from kubedag.core.reasons
    message: str
    # A list-event ("Started a, b") names its verb and stages, so that the shell can fold
    # several of them into one Event: fewer writes on fast pipelines.
    verb: str | None = None
    stages: tuple[str, ...] = ()

    @classmethod
    def listing(cls, reason: str, verb: str, stages: Sequence[str]) -> Event:
        return cls("Normal", reason, f"{verb} {short_list(stages)}", verb, tuple(stages))

    def absorb(self, other: Event) -> Event | None:
        """The two as one Event, or None when they are not the same kind of list-event."""
        if self.verb is None or (other.reason, other.verb) != (self.reason, self.verb):
            return None
        return Event.listing(self.reason, self.verb, [*self.stages, *other.stages])


MESSAGE_LIMIT = 1024


def clip(text: str | None, limit: int = MESSAGE_LIMIT) -> str | None:
    """Messages come from containers and the API server; the status schema bounds them."""
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


def short_list(names: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"


@dataclass
class Plan:
    status: PipelineRunStatus
    # The run's workspace PersistentVolumeClaim, created before any Job (AlreadyExists is fine).
    create_claim: dict[str, Any] | None = None
    create_jobs: list[dict[str, Any]] = field(default_factory=list)
    delete_jobs: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    # Reconcile again after this many seconds (a retry backoff, a deadline), even with no event.
    requeue_after: float | None = None
    # dryRun: create the Jobs with server-side dry run and report per stage (see dry_run.py).
    dry_run: bool = False
    delete_run: bool = False  # ttlSecondsAfterFinished has passed
    # Ready stages held back by the operator-wide stage budget (see admission.py).
    waiting_for_room: int = 0
    # Whether the run's running stages count against that budget: not with a Kueue queue.
    uses_stage_budget: bool = True
    # StageCacheEntry objects to create for cacheable stages that succeeded (AlreadyExists is
    # fine: an identical stage filled it first), replacing existing ones with spec.cache
    # Overwrite.
    cache_entries: list[dict[str, Any]] = field(default_factory=list)
    overwrite_cache: bool = False
    # The cache keys the run's in-flight stages will fill: identical stages of other runs
    # wait for them instead of computing the same result twice.
    cache_fills: frozenset[str] = frozenset()
    # (stage, result, reason) of each cache lookup this pass: result "hit" (reason Cached) or
    # "miss" (reason NoEntry, Changed, NoDigest, Expired, Disabled or Overwrite).
    cache_lookups: list[tuple[str, str, str]] = field(default_factory=list)
