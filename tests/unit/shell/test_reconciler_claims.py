"""The reconciler carries out a plan: the workspace claim first, then the Jobs."""

from __future__ import annotations

import asyncio
from typing import Any

from kubedag.core.decide import decide
from kubedag.shell.cache import RunCache
from kubedag.shell.kube import RunRef
from kubedag.shell.reconciler import Indexes, Reconciler
from kubedag.shell.settings import OperatorSettings
from tests.unit.core.factories import T0, facts, pipeline, stage

REF = RunRef("ns", "run", "uid-1234")
TEMPLATE = {"volumeClaimTemplate": {"spec": {"resources": {"requests": {"storage": "1Gi"}}}}}


class FakeKube:
    def __init__(self, claim_rejection: str | None = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self.claim_rejection = claim_rejection

    async def create_claim(self, manifest: dict[str, Any], *, dry_run: bool = False) -> str | None:
        self.calls.append(("claim", manifest["metadata"]["name"]))
        return self.claim_rejection

    async def create_job(self, manifest: dict[str, Any], *, dry_run: bool = False) -> str | None:
        self.calls.append(("job", manifest["metadata"]["name"]))
        return None

    async def delete_job(self, namespace: str, name: str) -> None:
        self.calls.append(("delete", name))

    async def patch_run_status(self, run: RunRef, patch: dict[str, Any]) -> dict[str, Any]:
        return {"metadata": {"namespace": run.namespace, "name": run.name, "uid": run.uid},
                "status": patch}

    async def post_event(self, run: RunRef, event: Any) -> None:
        pass


def execute(kube: FakeKube) -> Any:
    async def go() -> Any:
        reconciler = Reconciler(kube, OperatorSettings(), RunCache(), Indexes())  # type: ignore[arg-type]
        plan = decide(facts(pipeline(stage("a"), stage("b")), run_spec={"workspace": TEMPLATE}),
                      T0)
        body = {"metadata": {"namespace": "ns", "name": "run", "uid": "uid-1234"}}
        await reconciler._execute(REF, body, plan, T0, {})
        await reconciler.writer.flush()
        return plan

    return asyncio.run(go())


def test_the_claim_is_created_before_any_job() -> None:
    kube = FakeKube()
    execute(kube)
    assert kube.calls == [("claim", "run-workspace"), ("job", "run-a-1"), ("job", "run-b-1")]


def test_a_rejected_claim_creates_no_job_and_fails_the_run() -> None:
    kube = FakeKube(claim_rejection="exceeded quota")
    plan = execute(kube)
    assert kube.calls == [("claim", "run-workspace")]
    assert plan.status.phase == "Failed"
    assert (plan.status.conditions or [])[0].reason == "WorkspaceFailed"
