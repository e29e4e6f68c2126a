"""Workspaces: the claim a run's pods mount, created once before the first Job; and the pod
security settings every stage pod gets."""

from __future__ import annotations

from typing import Any

import pytest

from kubedag.api import RunPhase, StagePhase, VolumeClaimTemplate, WorkspaceStatus
from kubedag.core import reasons
from kubedag.core.decide import decide
from kubedag.core.feedback import record_claim_rejected
from kubedag.core.jobspec import JobSettings, build_claim, build_job
from kubedag.core.naming import MAX_CLAIM_NAME, workspace_claim_name
from kubedag.core.plan import Plan
from tests.unit.core.factories import IDENTITY, T0, at, facts, pipeline, pod, stage, step

TEMPLATE = {"volumeClaimTemplate": {
    "metadata": {"labels": {"team": "docs"}, "annotations": {"backup": "daily"}},
    "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "nfs",
             "resources": {"requests": {"storage": "2Gi"}}}}}
EXISTING = {"persistentVolumeClaim": {"claimName": "shared-data"}}


def pod_spec(manifest: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = manifest["spec"]["template"]["spec"]
    return spec


def volumes(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v.pop("name"): v for v in (dict(v) for v in pod_spec(manifest)["volumes"])}


def mounts(manifest: dict[str, Any]) -> dict[str, str]:
    [container] = pod_spec(manifest)["containers"]
    return {m["mountPath"]: m["name"] for m in container["volumeMounts"]}


def test_a_volume_claim_template_makes_one_claim_owned_by_the_run_before_the_first_job() -> None:
    spec = pipeline(stage("a"), stage("fan", "a", fanOut={"items": [1, 2]}))
    f = facts(spec, run_spec={"workspace": TEMPLATE})
    plan = decide(f, T0)
    claim = plan.create_claim
    assert claim is not None
    assert plan.status.workspace == WorkspaceStatus(claim_name="run-workspace", created=True)
    meta = claim["metadata"]
    assert (claim["apiVersion"], claim["kind"]) == ("v1", "PersistentVolumeClaim")
    assert (meta["name"], meta["namespace"]) == ("run-workspace", "ns")
    [owner] = meta["ownerReferences"]
    assert owner == {"apiVersion": "kubedag.io/v1alpha1", "kind": "PipelineRun", "name": "run",
                     "uid": "uid-1234", "controller": True, "blockOwnerDeletion": True}
    assert meta["labels"]["team"] == "docs"
    assert meta["labels"]["app.kubernetes.io/name"] == "kubedag"
    assert meta["labels"]["app.kubernetes.io/component"] == "workspace"
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "kubedag-operator"
    assert meta["labels"]["app.kubernetes.io/instance"] == "run"
    assert meta["labels"]["kubedag.io/run-uid"] == "uid-1234"
    assert meta["annotations"] == {"backup": "daily"}
    assert claim["spec"] == {"accessModes": ["ReadWriteMany"], "storageClassName": "nfs",
                             "resources": {"requests": {"storage": "2Gi"}}}
    assert volumes(plan.create_jobs[0])["workspace"] == {
        "persistentVolumeClaim": {"claimName": "run-workspace"}}
    # Later passes mount the same claim (fan-out pods too) and create no claim again.
    f = step(f, plan, now=at(10), pods=[pod("a")])
    plan = decide(f, at(10))
    assert plan.create_claim is None
    [fan] = plan.create_jobs
    assert fan["spec"]["completionMode"] == "Indexed"
    assert volumes(fan)["workspace"] == {"persistentVolumeClaim": {"claimName": "run-workspace"}}
    assert mounts(fan)["/workspace"] == "workspace"


def test_an_existing_claim_is_mounted_and_never_created() -> None:
    f = facts(pipeline(stage("a")), run_spec={"workspace": EXISTING})
    plan = decide(f, T0)
    assert plan.create_claim is None
    assert plan.status.workspace == WorkspaceStatus(claim_name="shared-data", created=False)
    assert volumes(plan.create_jobs[0])["workspace"] == {
        "persistentVolumeClaim": {"claimName": "shared-data"}}


def test_the_pipeline_default_workspace_applies_unless_the_run_sets_its_own() -> None:
    spec = pipeline(stage("a"), defaults={"workspace": TEMPLATE})
    plan = decide(facts(spec), T0)
    assert plan.create_claim is not None
    assert plan.status.workspace is not None
    assert plan.status.workspace.claim_name == "run-workspace"
    plan = decide(facts(spec, run_spec={"workspace": EXISTING}), T0)
    assert plan.create_claim is None
    assert plan.status.workspace is not None
    assert plan.status.workspace.claim_name == "shared-data"


def test_without_a_workspace_each_pod_gets_an_empty_writable_one() -> None:
    plan = decide(facts(pipeline(stage("a"))), T0)
    assert plan.create_claim is None and plan.status.workspace is None
    assert volumes(plan.create_jobs[0]) == {"workspace": {"emptyDir": {}}, "tmp": {"emptyDir": {}}}
    assert mounts(plan.create_jobs[0]) == {"/workspace": "workspace", "/tmp": "tmp"}


def test_a_dry_run_checks_the_claim_too() -> None:
    plan = decide(facts(pipeline(stage("a")), run_spec={"workspace": TEMPLATE, "dryRun": True}),
                  T0)
    assert plan.dry_run and plan.create_claim is not None
    assert volumes(plan.create_jobs[0])["workspace"] == {
        "persistentVolumeClaim": {"claimName": "run-workspace"}}


def rejected(dry_run: bool = False) -> Plan:
    run_spec: dict[str, Any] = {"workspace": TEMPLATE, "dryRun": dry_run}
    plan = decide(facts(pipeline(stage("a"), stage("b", "a")), run_spec=run_spec), T0)
    record_claim_rejected(plan, 'exceeded quota: requested storage=2Gi', T0)
    return plan


def test_a_rejected_claim_fails_the_run_and_no_job_is_created() -> None:
    plan = rejected()
    assert plan.create_jobs == []
    assert plan.status.phase == RunPhase.FAILED
    [condition] = plan.status.conditions or []
    assert condition.reason == reasons.WORKSPACE_FAILED
    assert "run-workspace" in condition.message and "exceeded quota" in condition.message
    stages = plan.status.stages or {}
    assert {n: (c.phase, c.reason) for n, c in stages.items()} == {
        "a": (StagePhase.SKIPPED, reasons.RUN_FAILED), "b": (StagePhase.SKIPPED,
                                                            reasons.RUN_FAILED)}
    assert reasons.WORKSPACE_FAILED in [e.reason for e in plan.events]
    assert reasons.STAGE_STARTED not in [e.reason for e in plan.events]
    dry = rejected(dry_run=True)
    assert dry.create_jobs == [] and dry.status.phase == RunPhase.FAILED
    assert (dry.status.conditions or [])[0].reason == reasons.DRY_RUN_FAILED


def test_claim_names_are_deterministic_and_bounded() -> None:
    assert workspace_claim_name("docs") == "docs-workspace"
    long = workspace_claim_name("r" * 250)
    assert len(long) <= MAX_CLAIM_NAME and long.endswith("-workspace")
    assert long == workspace_claim_name("r" * 250) != workspace_claim_name("r" * 249 + "s")


# --- pod security ----------------------------------------------------------------------------


@pytest.mark.parametrize("claim", [None, "run-workspace"])
def test_stage_pods_pass_the_restricted_pod_security_standard(claim: str | None) -> None:
    spec = pipeline(stage("a"))
    manifest = build_job(run=IDENTITY, pipeline=spec, stage=spec.stages[0], attempt=1,
                         params={}, outputs={}, settings=JobSettings(), workspace_claim=claim)
    pod = pod_spec(manifest)
    # runAsNonRoot at the pod level covers every container; fsGroupChangePolicy matters only
    # on a claim (an emptyDir starts empty).
    assert pod["securityContext"] == {
        "runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
        **({"fsGroupChangePolicy": "OnRootMismatch"} if claim else {})}
    assert pod["terminationGracePeriodSeconds"] == 30
    [container] = pod["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True}
    # restricted: only these volume types; no hostPath, no host namespaces.
    for volume in pod["volumes"]:
        assert set(volume) - {"name"} <= {"emptyDir", "persistentVolumeClaim"}
    assert not {"hostNetwork", "hostPID", "hostIPC"} & pod.keys()
    assert mounts(manifest) == {"/workspace": "workspace", "/tmp": "tmp"}


def test_claim_without_optional_fields() -> None:
    template = VolumeClaimTemplate.model_validate(
        {"spec": {"resources": {"requests": {"storage": "1Gi"}}}})
    claim = build_claim(IDENTITY, template)
    assert claim["spec"] == {"accessModes": ["ReadWriteOnce"],
                             "resources": {"requests": {"storage": "1Gi"}}}
    assert "annotations" not in claim["metadata"]
