"""Replicas under kopf peering: which one leads, when a standby starts acting, and why a
leader that kopf pauses leaves.

kopf peering is not leader election by itself: every replica writes its priority into the
ClusterKopfPeering object, and kopf pauses a replica while another live one has a HIGHER OR
EQUAL priority. Two replicas with kopf's default priority (0) therefore pause each other and
nothing runs. Here the priority is the start time, older first: the oldest live replica leads,
and a replica restarted after a crash joins as the standby instead of taking the lead back
(which would pause the leader mid-work for nothing).

A paused kopf stops its watch streams, so a standby sees no events: whatever the operator
loads or keeps from events is stale by the time the standby takes over. Hence:

* The standby holds nothing. What the operator builds for itself (the stage cache index,
  loaded with one LIST; the background loops that act on it - reconcile workers, cache GC,
  the breakers' ticker) starts when kopf first calls one of its handlers (`Activation`). kopf
  calls no handler while paused, and fills every index before the first call, so that moment
  is exactly "leading, with current indexes" - for the sole replica, right after its start.
* A leader is never paused and resumed. kopf keeps its indexes across a pause, and a resumed
  watch re-lists without telling the index what was deleted meanwhile; the breakers would
  keep writing the states they hold. A replica that has acted and is then paused (an older
  peer reappeared after being partitioned away, or took too long to renew its record) exits
  at once (`exit_when_demoted`): it restarts as a clean standby.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger("kubedag.standby")

# kopf's peering logger, and the start of the messages it logs when (and only when) it pauses
# this operator (kopf 1.45: kopf/_core/engines/peering.py, process_peering_event). kopf has no
# callback for the pause; tests/unit/shell/test_standby.py feeds kopf's own function a peering
# record, so a kopf that words these differently fails there.
KOPF_PEERING_LOGGER = "kopf._core.engines.peering"
KOPF_PAUSE_MESSAGES = ("Pausing operations in favour of", "Pausing all operators")
# Logged once, when the replica activates (tests measure the takeover from its timestamp).
ACTIVATION_MESSAGE = "leading: kopf delivers events to this replica"
# The exit status of a demoted leader (EX_TEMPFAIL: "try again"): its Pod restarts it.
DEMOTED_EXIT_CODE = 75
# Same-millisecond starts are told apart by this many random values.
PRIORITY_TIE_BREAKERS = 1000
# Larger than any start time in milliseconds (year 2286): priorities stay positive.
PRIORITY_CEILING_MS = 10**13


def peering_priority(started: float, tie_breaker: int | None = None) -> int:
    """kopf's priority for a replica started at ``started`` (epoch seconds): the older, the
    higher. Distinct for replicas started in the same millisecond, barring a 1-in-1000 tie."""
    if tie_breaker is None:
        tie_breaker = random.randrange(PRIORITY_TIE_BREAKERS)
    return (PRIORITY_CEILING_MS - int(started * 1000)) * PRIORITY_TIE_BREAKERS + tie_breaker


class Activation:
    """Runs ``activate`` once, when the first kopf handler asks (`ensure`); every handler
    call waits until it has finished, so none acts on a half-built state."""

    def __init__(self, activate: Callable[[], Awaitable[None]]) -> None:
        self._activate = activate
        self._task: asyncio.Task[None] | None = None
        self.started_at: float | None = None  # time.time() of the activation

    @property
    def active(self) -> bool:
        return self._task is not None

    async def ensure(self) -> None:
        if self._task is None:
            self.started_at = time.time()
            log.info("%s; loading its state", ACTIVATION_MESSAGE)
            self._task = asyncio.ensure_future(self._activate())
        task = self._task
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            raise
        except Exception:
            if self._task is task:  # let the next handler call try again
                self._task = None
            raise


class DemotionGuard(logging.Filter):
    """Exits the process when kopf pauses it after it has acted (see the module's docstring).

    A logging filter because kopf's pause decision is announced only in its log: the filter
    runs synchronously where kopf decides, before the pause takes effect.
    """

    def __init__(self, activation: Activation,
                 exit: Callable[[int], object] = os._exit) -> None:
        super().__init__()
        self.activation = activation
        self._exit = exit

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.activation.active and message.startswith(KOPF_PAUSE_MESSAGES):
            log.error("kopf pauses this replica after it has acted (%s): exiting, to restart "
                      "as a standby that holds nothing stale", message)
            logging.shutdown()
            self._exit(DEMOTED_EXIT_CODE)
        return True


def exit_when_demoted(activation: Activation,
                      exit: Callable[[int], object] = os._exit) -> DemotionGuard:
    """Install the guard on kopf's peering logger (which must pass INFO for it to see)."""
    guard = DemotionGuard(activation, exit)
    logger = logging.getLogger(KOPF_PEERING_LOGGER)
    if not logger.isEnabledFor(logging.INFO):
        logger.setLevel(logging.INFO)
    logger.addFilter(guard)
    return guard
