"""The CircuitBreaker resource: stop hammering a broken dependency.

A breaker guards one key in one namespace (a stage's `breaker.key`, else its processor, else
its image). Infrastructure failures and the worker's retryable exit code 75 of attempts with
that key trip it; while it is open, new attempts of such stages wait (Pending, reason
`CircuitOpen`) instead of failing. The operator keeps the state in this resource so that it
survives restarts and shows in `kubectl get circuitbreakers`.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field

from kubedag.api._base import MAX_SHORT_TEXT, ApiModel
from kubedag.api.conditions import Condition
from kubedag.contract import API_GROUP, API_VERSION

# Defaults of the thresholds a stage or pipeline leaves unset (see kubedag.core.breaker).
DEFAULT_CONSECUTIVE_FAILURES = 5
DEFAULT_FAILURE_RATIO = 0.5
DEFAULT_MINIMUM_ATTEMPTS = 10
DEFAULT_WINDOW_SECONDS = 600
DEFAULT_OPEN_SECONDS = 60
# Repeated trips double openSeconds up to this.
MAX_OPEN_SECONDS = 600
# recentAttempts keeps at most this many entries (the newest), so the object stays small
# however busy the key is; the ratio is computed over them.
MAX_RECENT_ATTEMPTS = 100
MAX_KEY = 253


class BreakerState(StrEnum):
    """Closed: attempts run. Open: new attempts wait. HalfOpen: one probe attempt may run."""

    CLOSED = "Closed"
    OPEN = "Open"
    HALF_OPEN = "HalfOpen"


class ForcedState(StrEnum):
    """A state set by hand with `spec.forceState`."""

    OPEN = "Open"
    CLOSED = "Closed"


class BreakerThresholds(ApiModel):
    """When a breaker trips and how long it stays open. Every field is optional: an unset one
    takes the pipeline's `defaults.breaker` value, else the built-in default. (No schema
    defaults on purpose: the API server would store them on every stage, and a stage's
    value would then always hide the pipeline's.)"""

    consecutive_failures: int | None = Field(
        default=None, ge=1, le=1000,
        description="Trip after this many counted failures in a row (default 5).")
    failure_ratio: float | None = Field(
        default=None, ge=0.01, le=1,
        description="Trip when at least this share of the attempts within windowSeconds "
        "failed (default 0.5) ...")
    minimum_attempts: int | None = Field(
        default=None, ge=1, le=MAX_RECENT_ATTEMPTS,
        description="... once there were at least this many attempts in the window (default "
        "10).")
    window_seconds: int | None = Field(
        default=None, ge=1, le=86400,
        description="The window of the failure ratio, in seconds (default 600).")
    open_seconds: int | None = Field(
        default=None, ge=1, le=MAX_OPEN_SECONDS,
        description="How long the breaker stays open before a probe attempt may run (default "
        "60); doubled on every trip that follows a failed probe, up to 600.")


class StageBreaker(BreakerThresholds):
    """A stage's (or the pipeline's `defaults.breaker`) circuit breaker settings."""

    enabled: bool | None = Field(
        default=None,
        description="false: attempts of this stage neither count for nor wait on any breaker "
        "(default true).")
    key: str | None = Field(
        default=None, min_length=1, max_length=MAX_KEY,
        description="The dependency the stage shares with others, e.g. `s3-prod`: stages with "
        "the same key (in the same namespace) share one breaker. Default: the stage's "
        "processor, else its image.")


class CircuitBreakerSpec(ApiModel):
    """Which key the breaker guards, its thresholds, and a manual override."""

    key: str = Field(
        min_length=1, max_length=MAX_KEY,
        description="The breaker key: a stage's `breaker.key`, processor or image.")
    force_state: ForcedState | None = Field(
        default=None,
        description="Open: hold every new attempt of the key until this is removed (then one "
        "probe runs). Closed: let every attempt run and never trip (failures are still "
        "counted). Unset: the breaker decides.")
    thresholds: BreakerThresholds | None = Field(
        default=None,
        description="Copied from the first stage that reported to the breaker; edit to "
        "change them for every stage of the key.")


class BreakerAttempt(ApiModel):
    """One finished attempt that the breaker counted (a success or a counted failure)."""

    time: datetime = Field(description="When the attempt finished.")
    failed: bool = Field(description="A counted failure (else a success).")


class BreakerProbe(ApiModel):
    """The one attempt a half-open breaker let through."""

    run: str = Field(max_length=MAX_SHORT_TEXT, description="The PipelineRun.")
    stage: str = Field(max_length=MAX_SHORT_TEXT, description="The stage.")
    start_time: datetime = Field(description="When it was let through.")


class BreakerRelease(ApiModel):
    """After a successful probe held attempts are let through in growing waves (1, 2, 4, 8 …):
    a wave may start `wave` attempts, and the next, twice as large, begins once that many have
    finished without a counted failure."""

    wave: int = Field(ge=1, description="Size of the current wave.")
    started: int = Field(default=0, ge=0, description="Attempts started in this wave.")
    settled: int = Field(
        default=0, ge=0,
        description="Attempts finished in this wave without a counted failure.")


class BreakerFailure(ApiModel):
    """The last counted failure, for `kubectl describe`."""

    run: str = Field(max_length=MAX_SHORT_TEXT, description="The PipelineRun.")
    stage: str = Field(max_length=MAX_SHORT_TEXT, description="The stage.")
    reason: str = Field(max_length=64, description="The stage's failure reason.")
    time: datetime = Field(description="When it failed.")


class CircuitBreakerStatus(ApiModel):
    """The breaker's state, written only by the operator."""

    state: BreakerState = Field(default=BreakerState.CLOSED, description="Closed, Open or "
                                "HalfOpen.")
    consecutive_failures: int = Field(
        default=0, ge=0, description="Counted failures since the last success.")
    recent_attempts: list[BreakerAttempt] | None = Field(
        default=None, max_length=MAX_RECENT_ATTEMPTS,
        description="Counted attempts within the window (the newest 100 at most), oldest "
        "first: what the failure ratio is computed from.")
    trips: int = Field(default=0, ge=0, description="How often the breaker has opened.")
    opened_time: datetime | None = Field(
        default=None, description="When the breaker last opened.")
    open_seconds: int | None = Field(
        default=None, ge=1, description="How long the current (or last) opening lasts.")
    half_open_time: datetime | None = Field(
        default=None, description="While open: when a probe attempt may run.")
    probe: BreakerProbe | None = Field(
        default=None, description="While half-open: the attempt let through, if any.")
    release: BreakerRelease | None = Field(
        default=None, description="While closed after a probe: the wave held attempts are "
        "let through in.")
    last_failure: BreakerFailure | None = Field(
        default=None, description="The last counted failure.")
    conditions: list[Condition] | None = Field(
        default=None,
        description="`Open`: True while attempts are held (Open or HalfOpen), with the reason "
        "of the last transition (Tripped, ProbeFailed, HalfOpened, ProbeSucceeded, Forced...).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    observed_generation: int | None = Field(
        default=None, description="The metadata.generation this status describes.")


class CircuitBreaker(ApiModel):
    """A circuit breaker over one dependency (key) of a namespace's stages: after repeated
    infrastructure failures new attempts wait instead of failing, until a probe succeeds."""

    api_version: str = Field(default=f"{API_GROUP}/{API_VERSION}", description="API version.")
    kind: Literal["CircuitBreaker"] = Field(default="CircuitBreaker", description="CircuitBreaker")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Standard object metadata.")
    spec: CircuitBreakerSpec = Field(
        description="The key guarded, thresholds, and `forceState` to open or close it by hand.")
    status: CircuitBreakerStatus | None = Field(default=None, description="Observed state.")
