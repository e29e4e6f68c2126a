"""After a status write, the reconciler wakes the run itself when the watch's echo will not:
a spec change the write's response shows first, or a run that has just finished."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from kubedag.shell.cache import RunCache
from kubedag.shell.kube import RunRef
from kubedag.shell.metrics import Metrics
from kubedag.shell.reconciler import Indexes, Reconciler
from kubedag.shell.settings import OperatorSettings

REF = RunRef("ns", "run", "uid-1")


class NoKube:
    """No API call is made by what is tested here."""

    async def post_event(self, run: RunRef, event: Any) -> None:
        raise AssertionError("no Event expected")


def body(rv: int, generation: int, phase: str, ttl: int | None = None) -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": "run", "uid": "uid-1",
                         "resourceVersion": str(rv), "generation": generation},
            "spec": {} if ttl is None else {"ttlSecondsAfterFinished": ttl},
            "status": {"phase": phase}}


@pytest.mark.parametrize(("generation", "phase", "ttl", "woken"), [
    (1, "Running", None, False),  # the usual write: its echo is no news, nor anything else
    (2, "Running", None, True),  # e.g. spec.cancel set meanwhile, its own event not yet seen
    (1, "Succeeded", None, True),  # the next pass drops what was kept of the run
    (1, "Failed", 60, True),  # the next pass counts down ttlSecondsAfterFinished
])
def test_a_write_wakes_the_run_only_when_its_echo_would_have_mattered(
        generation: int, phase: str, ttl: int | None, woken: bool) -> None:
    runs = RunCache()
    runs.put(body(5, 1, "Running"))
    reconciler = Reconciler(NoKube(), OperatorSettings(), runs,  # type: ignore[arg-type]
                            Indexes(), metrics=Metrics(CollectorRegistry()))
    wakes: list[Any] = []
    reconciler.wake = wakes.append
    updated = body(6, generation, phase, ttl)
    reconciler._written(REF, {"phase": "Running"}, {"phase": phase}, {"phase": phase}, updated)
    assert wakes == ([("ns", "run")] if woken else [])
    assert runs.bodies[("ns", "run")] is updated
    assert runs.offer(body(6, generation, phase, ttl)) is None  # the echo itself: no news
