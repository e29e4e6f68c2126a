"""A run's passes are paced by what each costs again and again, not by what is done once."""

from __future__ import annotations

import asyncio
from typing import Any

from kubedag.shell.cache import RunCache
from kubedag.shell.reconciler import Indexes, Reconciler
from kubedag.shell.settings import OperatorSettings
from tests.unit.shell.test_reconciler_claims import FakeKube

KEY = ("ns", "run")


def run_body(stages: int) -> dict[str, Any]:
    chain = [{"name": f"s{i:03d}", "image": "busybox",
              **({"dependsOn": [f"s{i - 1:03d}"]} if i else {})} for i in range(stages)]
    return {"apiVersion": "kubedag.io/v1alpha1", "kind": "PipelineRun",
            "metadata": {"namespace": "ns", "name": "run", "uid": "uid-1", "generation": 1,
                         "resourceVersion": "1", "creationTimestamp": "2026-12-01T00:00:00Z"},
            "spec": {"pipelineSpec": {"stages": chain}}}


def test_the_pass_that_starts_a_run_sets_no_pace_and_the_next_ones_do() -> None:
    async def passes() -> list[float]:
        runs = RunCache()
        runs.put(run_body(300))
        kube = FakeKube()
        reconciler = Reconciler(kube, OperatorSettings(), runs, Indexes())  # type: ignore[arg-type]
        costs = []
        for _ in range(3):
            await reconciler.reconcile(KEY)
            costs.append(reconciler.pass_cost[KEY])
        await reconciler.writer.flush()
        assert kube.calls == [("job", "run-s000-1")]
        return costs

    first, *later = asyncio.run(passes())
    # The first validated 300 stages and parsed the spec: it costs what no later pass does.
    assert first == 0.0
    assert all(cost > 0.0 for cost in later)
