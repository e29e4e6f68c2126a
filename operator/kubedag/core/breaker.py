"""Circuit breakers, decided with no I/O: which attempts count, the state machine, admission.

A breaker guards one key of a namespace (`breaker_key`: a stage's `breaker.key`, else its
processor, else its image). Its state lives in a CircuitBreaker resource; the shell
(kubedag.shell.breakers) keeps it, feeds it the attempts decide() reports, and gives decide() a
`BreakerView` per key: how many new attempts may start now.

The state machine:

* **Closed**: attempts run. A counted failure (`classify`) adds to `consecutiveFailures` and
  the window; a success resets `consecutiveFailures`. `consecutiveFailures` failures in a row,
  or a failure ratio of at least `failureRatio` over at least `minimumAttempts` attempts within
  `windowSeconds`, **trip** it: Open for `openSeconds`.
* **Open**: no new attempt starts (stages wait, Pending with reason CircuitOpen). Results of
  attempts that were already running are recorded but change nothing.
* **HalfOpen** (`openSeconds` after opening): exactly one probe attempt may start. Its success
  closes the breaker and starts the **release**; its counted failure opens it again for twice
  as long (at most 10 minutes); a probe that ends for an uncounted reason (the user's own
  error, a cancelled run) frees the probe slot for another attempt.
* **Release** (Closed, after a probe): held attempts start in waves of 1, 2, 4, 8 … A wave may
  start `wave` attempts; the next wave, twice as large, begins once that many attempts have
  finished without a counted failure (successes are the evidence that the dependency copes
  with the load so far). A counted failure during the release opens the breaker again (for
  twice as long). The release ends - attempts run without limit - once every attempt started
  in it has finished well and no stage is waiting any more, or after the wave of
  `RELEASED_WAVE` attempts has gone well.
* `spec.forceState` overrides all this: Open holds every attempt (no probe) until it is
  removed, then one probe runs at once; Closed lets everything run and never trips (failures
  are still counted, so the numbers stay honest).

Only the right failures count: infrastructure failures (`COUNTED_REASONS`) and the worker's
retryable exit code 75 (`contract.EXIT_RETRYABLE`, "a dependency is down") are evidence that
the dependency is broken. Every other exit code is the user's own code failing (64, 65 and 66
are permanent errors by contract; 1 is an unexpected exception) and never counts, nor do
failures that say nothing about the dependency (a missing Secret, an invalid reference,
outputs too large, an unschedulable pod: nodes are not the dependency).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from kubedag import contract
from kubedag.api import (
    BreakerState,
    BreakerThresholds,
    CircuitBreakerSpec,
    CircuitBreakerStatus,
    Condition,
    ConditionStatus,
    ForcedState,
    PipelineDefaults,
    Stage,
    StageBreaker,
    set_condition,
)
from kubedag.api.breaker import (
    DEFAULT_CONSECUTIVE_FAILURES,
    DEFAULT_FAILURE_RATIO,
    DEFAULT_MINIMUM_ATTEMPTS,
    DEFAULT_OPEN_SECONDS,
    DEFAULT_WINDOW_SECONDS,
    MAX_OPEN_SECONDS,
    MAX_RECENT_ATTEMPTS,
    BreakerAttempt,
    BreakerFailure,
    BreakerProbe,
    BreakerRelease,
)
from kubedag.core import reasons
from kubedag.core.observe import Outcome

# Stage failure reasons that say the infrastructure or a dependency failed, not the user's code.
COUNTED_REASONS = frozenset({reasons.OOM_KILLED, reasons.POD_LOST, reasons.IMAGE_PULL_FAILED,
                             reasons.DEADLINE_EXCEEDED, reasons.JOB_LOST})
# A release whose wave of this many attempts went well is over: attempts run without limit.
RELEASED_WAVE = 64
# The CircuitBreaker's condition: True while it holds attempts (Open or HalfOpen).
CONDITION_OPEN = "Open"


class Verdict(StrEnum):
    """What a finished attempt tells a breaker."""

    SUCCESS = "Success"
    FAILURE = "Failure"  # a counted failure
    IGNORED = "Ignored"  # says nothing about the dependency


def classify(outcome: Outcome, reason: str | None, exit_code: int | None) -> Verdict:
    """Whether a finished attempt counts for its breaker (see the module's docstring)."""
    if outcome is Outcome.SUCCEEDED:
        return Verdict.SUCCESS
    if reason in COUNTED_REASONS:
        return Verdict.FAILURE
    if reason in (None, reasons.EXIT_CODE) and exit_code == contract.EXIT_RETRYABLE:
        return Verdict.FAILURE
    return Verdict.IGNORED


# --- which breaker a stage answers to ----------------------------------------------------------

def stage_policy(stage: Stage, defaults: PipelineDefaults | None) -> StageBreaker:
    """The stage's breaker settings over the pipeline's `defaults.breaker`, field by field."""
    layers = [b for b in ((defaults.breaker if defaults else None), stage.breaker) if b]
    merged: dict[str, object] = {}
    for layer in layers:
        merged.update({name: getattr(layer, name) for name in layer.model_fields_set})
    return StageBreaker.model_validate(merged)


def breaker_key(stage: Stage, defaults: PipelineDefaults | None, image: str) -> str | None:
    """The key of the stage's breaker (None: opted out): its `breaker.key`, else its
    processor, else ``image``, the image its pods run (see jobspec.stage_image)."""
    policy = stage_policy(stage, defaults)
    if policy.enabled is False:
        return None
    return policy.key or stage.processor or image


def thresholds_of(policy: StageBreaker) -> BreakerThresholds:
    """The thresholds a stage's settings set (those it leaves unset are left out)."""
    fields = set(BreakerThresholds.model_fields) & policy.model_fields_set
    return BreakerThresholds.model_validate({name: getattr(policy, name) for name in fields})


@dataclass(frozen=True)
class Limits:
    """Thresholds with the defaults filled in: what the state machine compares against."""

    consecutive_failures: int = DEFAULT_CONSECUTIVE_FAILURES
    failure_ratio: float = DEFAULT_FAILURE_RATIO
    minimum_attempts: int = DEFAULT_MINIMUM_ATTEMPTS
    window_seconds: int = DEFAULT_WINDOW_SECONDS
    open_seconds: int = DEFAULT_OPEN_SECONDS

    @classmethod
    def of(cls, thresholds: BreakerThresholds | None) -> Limits:
        if thresholds is None:
            return cls()
        return cls(**{name: getattr(thresholds, name) for name in thresholds.model_fields_set
                      if getattr(thresholds, name) is not None})


# --- what decide() sees and reports ---------------------------------------------------------------

@dataclass(frozen=True)
class BreakerView:
    """A breaker as decide() sees it: how many new attempts of its key may start now."""

    name: str  # the CircuitBreaker object
    state: BreakerState
    allowance: int | None  # None: no limit
    half_open_time: datetime | None = None
    probe: str | None = None  # "run/stage" of the probe out, while half-open

    def hold_message(self, key: str) -> str:
        """Why a stage of this key waits, for its checkpoint and the run's Event."""
        where = f"circuit breaker {self.name} (key {key})"
        if self.state == BreakerState.OPEN and self.half_open_time is not None:
            return (f"{where} is open: a probe attempt may run at "
                    f"{self.half_open_time.isoformat()}")
        if self.state == BreakerState.OPEN:
            return f"{where} is forced open (spec.forceState)"
        if self.state == BreakerState.HALF_OPEN:
            return f"{where} is half-open: waiting for probe {self.probe or '?'}"
        return f"{where} is releasing held attempts in waves"


@dataclass(frozen=True)
class AttemptReport:
    """A finished attempt of a stage with a breaker, as decide() reports it in its Plan."""

    key: str
    stage: str
    verdict: Verdict
    reason: str | None
    time: datetime
    # The stage's own thresholds: a breaker created by this report starts with them.
    thresholds: BreakerThresholds


@dataclass(frozen=True)
class Transition:
    """A change of a breaker's state, for its Events, its condition and the metrics."""

    state: BreakerState
    reason: str  # kubedag.core.reasons.CIRCUIT_*
    message: str

    @property
    def warning(self) -> bool:
        return self.state != BreakerState.CLOSED


# --- the state machine ---------------------------------------------------------------------------

Step = tuple[CircuitBreakerStatus, list[Transition]]


def advance(spec: CircuitBreakerSpec, status: CircuitBreakerStatus, now: datetime,
            waiting: int) -> Step:
    """Transitions that come with time, the spec, or demand: forceState, Open -> HalfOpen once
    openSeconds have passed, and the end of a release once nobody waits. ``waiting``: stages
    of the key held now, over all runs."""
    if spec.force_state == ForcedState.OPEN:
        if status.state == BreakerState.OPEN and status.half_open_time is None:
            return status, []
        return _change(status, now, BreakerState.OPEN, reasons.CIRCUIT_FORCED_OPEN,
                       "forced open by spec.forceState: every attempt waits",
                       opened_time=now if status.state != BreakerState.OPEN
                       else status.opened_time,
                       half_open_time=None, probe=None, release=None)
    if spec.force_state == ForcedState.CLOSED:
        if status.state == BreakerState.CLOSED and status.release is None:
            return status, []
        return _change(status, now, BreakerState.CLOSED, reasons.CIRCUIT_FORCED_CLOSED,
                       "forced closed by spec.forceState: every attempt runs",
                       half_open_time=None, probe=None, release=None, consecutive_failures=0)
    if status.state == BreakerState.OPEN and status.half_open_time is None:
        # forceState: Open was removed: try a probe at once.
        return _change(status, now, BreakerState.HALF_OPEN, reasons.CIRCUIT_FORCE_LIFTED,
                       "spec.forceState removed: one probe attempt may run", probe=None)
    if (status.state == BreakerState.OPEN and status.half_open_time is not None
            and now >= status.half_open_time):
        return _change(status, now, BreakerState.HALF_OPEN, reasons.CIRCUIT_HALF_OPENED,
                       f"open for {status.open_seconds} s: one probe attempt may run",
                       half_open_time=None, probe=None)
    release = status.release
    if (status.state == BreakerState.CLOSED and release is not None and waiting == 0
            and release.settled >= release.started):
        return _change(status, now, BreakerState.CLOSED, reasons.CIRCUIT_RELEASED,
                       "every held attempt was released: attempts run without limit",
                       release=None)
    return status, []


def allowance(spec: CircuitBreakerSpec, status: CircuitBreakerStatus) -> int | None:
    """How many new attempts of the key may start now (None: no limit). Call on the status
    `advance` returned, so that timers and forceState are already applied."""
    if spec.force_state == ForcedState.CLOSED:
        return None
    if status.state == BreakerState.OPEN:
        return 0
    if status.state == BreakerState.HALF_OPEN:
        return 0 if status.probe is not None else 1
    if status.release is not None:
        return max(status.release.wave - status.release.started, 0)
    return None


def view(name: str, spec: CircuitBreakerSpec, status: CircuitBreakerStatus) -> BreakerView:
    probe = status.probe
    return BreakerView(name=name, state=status.state, allowance=allowance(spec, status),
                       half_open_time=status.half_open_time,
                       probe=f"{probe.run}/{probe.stage}" if probe else None)


def record_starts(status: CircuitBreakerStatus, run: str, stages: list[str],
                  now: datetime) -> CircuitBreakerStatus:
    """Debit attempts that started: the first started while half-open is the probe, those
    started during a release count against its wave."""
    if not stages:
        return status
    if status.state == BreakerState.HALF_OPEN and status.probe is None:
        probe = BreakerProbe(run=run, stage=stages[0], start_time=now.replace(microsecond=0))
        return status.model_copy(update={"probe": probe})
    if status.state == BreakerState.CLOSED and status.release is not None:
        release = status.release.model_copy(
            update={"started": status.release.started + len(stages)})
        return status.model_copy(update={"release": release})
    return status


def record_result(spec: CircuitBreakerSpec, status: CircuitBreakerStatus, run: str,
                  report: AttemptReport, now: datetime) -> Step:
    """Fold one finished attempt into the breaker."""
    is_probe = (status.state == BreakerState.HALF_OPEN and status.probe is not None
                and (status.probe.run, status.probe.stage) == (run, report.stage))
    if report.verdict is Verdict.IGNORED:
        if is_probe:
            # It said nothing about the dependency: let another attempt probe it.
            return status.model_copy(update={"probe": None}), []
        return _settle_release(status), []
    limits = Limits.of(spec.thresholds)
    failed = report.verdict is Verdict.FAILURE
    update: dict[str, object] = {
        "recent_attempts": _window(status, limits, now, BreakerAttempt(
            time=report.time.replace(microsecond=0), failed=failed)),
        "consecutive_failures": status.consecutive_failures + 1 if failed else 0,
    }
    if failed:
        update["last_failure"] = BreakerFailure(run=run, stage=report.stage,
                                                reason=report.reason or reasons.EXIT_CODE,
                                                time=report.time.replace(microsecond=0))
    status = status.model_copy(update=update)
    if spec.force_state is not None or status.state == BreakerState.OPEN:
        return status, []  # counted only: forced, or a straggler of an already open breaker
    who = f"{run}/{report.stage}"
    if status.state == BreakerState.HALF_OPEN:
        if not is_probe:
            return status, []
        if failed:
            return _reopen(status, limits, now, reasons.CIRCUIT_PROBE_FAILED,
                           f"probe {who} failed ({report.reason})", doubled=True)
        return _change(status, now, BreakerState.CLOSED, reasons.CIRCUIT_PROBE_SUCCEEDED,
                       f"probe {who} succeeded: held attempts are released in waves of 1, 2, "
                       "4, 8 ...", probe=None, release=BreakerRelease(wave=1))
    if failed and status.release is not None:
        return _reopen(status, limits, now, reasons.CIRCUIT_RELEASE_FAILED,
                       f"{who} failed ({report.reason}) while held attempts were being "
                       "released", doubled=True)
    if failed and (why := _trips(status, limits, now)):
        return _reopen(status, limits, now, reasons.CIRCUIT_TRIPPED,
                       f"{why}; last: {who} ({report.reason})", doubled=False)
    return (_settle_release(status) if not failed else status), []


def rejected_attempts(starts: dict[str, list[str]], rejected: Iterable[str],
                      now: datetime) -> list[AttemptReport]:
    """Attempts debited from a breaker (``Plan.breaker_starts``) whose Job the API server then
    refused: they end uncounted, since the dependency was never tried. Without this report a
    refused probe would keep the half-open breaker's only probe slot taken until its run ends.
    """
    refused = set(rejected)
    return [AttemptReport(key=key, stage=stage, verdict=Verdict.IGNORED,
                          reason=reasons.JOB_REJECTED, time=now, thresholds=BreakerThresholds())
            for key, stages in starts.items() for stage in stages if stage in refused]


def release_probe(status: CircuitBreakerStatus, run: str) -> CircuitBreakerStatus:
    """The run holding the probe is gone: another attempt may probe."""
    if status.probe is not None and status.probe.run == run:
        return status.model_copy(update={"probe": None})
    return status


def _settle_release(status: CircuitBreakerStatus) -> CircuitBreakerStatus:
    """One attempt of the release finished without a counted failure: once a whole wave
    has, the next wave is twice as large."""
    release = status.release
    if release is None:
        return status
    settled = release.settled + 1
    if settled < release.wave:
        return status.model_copy(update={"release": release.model_copy(
            update={"settled": settled})})
    if release.wave >= RELEASED_WAVE:
        return status.model_copy(update={"release": None})
    started = max(release.started - release.wave, 0)
    return status.model_copy(update={"release": BreakerRelease(
        wave=release.wave * 2, started=started, settled=settled - release.wave)})


def _trips(status: CircuitBreakerStatus, limits: Limits, now: datetime) -> str | None:
    """Why the counted failures so far trip the breaker, if they do."""
    if status.consecutive_failures >= limits.consecutive_failures:
        return f"{status.consecutive_failures} consecutive failures"
    attempts = status.recent_attempts or []
    failures = sum(1 for a in attempts if a.failed)
    if len(attempts) >= limits.minimum_attempts and failures >= limits.failure_ratio * len(
            attempts):
        return (f"{failures} of {len(attempts)} attempts failed in the last "
                f"{limits.window_seconds} s")
    return None


def _window(status: CircuitBreakerStatus, limits: Limits, now: datetime,
            attempt: BreakerAttempt) -> list[BreakerAttempt]:
    since = now - timedelta(seconds=limits.window_seconds)
    kept = [a for a in status.recent_attempts or [] if a.time >= since]
    return [*kept, attempt][-MAX_RECENT_ATTEMPTS:]


def _reopen(status: CircuitBreakerStatus, limits: Limits, now: datetime, reason: str,
            message: str, *, doubled: bool) -> Step:
    seconds = limits.open_seconds
    if doubled and status.open_seconds:
        seconds = min(status.open_seconds * 2, MAX_OPEN_SECONDS)
    stamp = now.replace(microsecond=0)
    half_open = stamp + timedelta(seconds=seconds)
    return _change(status, now, BreakerState.OPEN, reason,
                   f"{message}: open for {seconds} s, until {half_open.isoformat()}",
                   trips=status.trips + 1, opened_time=stamp, open_seconds=seconds,
                   half_open_time=half_open, probe=None, release=None)


def _change(status: CircuitBreakerStatus, now: datetime, state: BreakerState, reason: str,
            message: str, **update: object) -> Step:
    held = state != BreakerState.CLOSED
    condition = Condition(type=CONDITION_OPEN,
                          status=ConditionStatus.TRUE if held else ConditionStatus.FALSE,
                          reason=reason, message=message,
                          last_transition_time=now.replace(microsecond=0))
    conditions = set_condition(list(status.conditions or []), condition)
    new = status.model_copy(update={**update, "state": state, "conditions": conditions})
    return new, [Transition(state, reason, message)]
