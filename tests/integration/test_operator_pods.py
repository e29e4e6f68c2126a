"""What stage pods get on a real API server: the workspace claim, pod security, and how a pod
whose container cannot start fails its stage (kwok has no kubelet: the test writes the
container's waiting state the way a kubelet would)."""

from __future__ import annotations

from typing import Any

from tests.integration.operator_process import OperatorProcess
from tests.integration.runs import (
    condition,
    create_run,
    event_messages,
    get_run,
    jobs_by_stage,
    patch_run,
    pipeline,
    stage,
    stages_of,
    wait_phase,
)
from tests.integration.support import Cluster, wait_for

TEMPLATE = {"metadata": {"labels": {"team": "docs"}},
            "spec": {"accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}}}
# No node has this label: the pod stays unscheduled, which kwok leaves alone.
NOWHERE = {"nodeSelector": {"kubedag.io/test": "nowhere"}}


def test_a_volume_claim_template_gives_the_run_an_owned_claim_mounted_by_every_pod(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    create_run(cluster, namespace, "shared", {
        "workspace": {"volumeClaimTemplate": TEMPLATE},
        "pipelineSpec": pipeline(cluster, [stage("fan", fanOut={"items": [1, 2]})])})
    job = wait_for(lambda: jobs_by_stage(cluster, namespace).get("fan"), what="the fan Job")[0]
    claim = cluster.core.read_namespaced_persistent_volume_claim("shared-workspace", namespace)
    # The status is written after the Jobs are created, at most a second later.
    wait_for(lambda: (get_run(cluster, namespace, "shared").get("status") or {}).get("workspace"),
             timeout=10, what="the workspace in the status")
    run = get_run(cluster, namespace, "shared")
    [owner] = claim.metadata.owner_references
    assert (owner.kind, owner.name, owner.uid, owner.controller) == (
        "PipelineRun", "shared", run["metadata"]["uid"], True)
    assert claim.metadata.labels["team"] == "docs"
    assert claim.metadata.labels["app.kubernetes.io/component"] == "workspace"
    assert claim.metadata.labels["app.kubernetes.io/managed-by"] == "kubedag-operator"
    assert claim.spec.access_modes == ["ReadWriteOnce"]
    assert claim.spec.resources.requests == {"storage": "1Gi"}
    assert run["status"]["workspace"] == {"claimName": "shared-workspace", "created": True}
    pod = job.spec.template.spec
    volumes = {v.name: v for v in pod.volumes}
    assert volumes["workspace"].persistent_volume_claim.claim_name == "shared-workspace"
    assert volumes["tmp"].empty_dir is not None
    [container] = pod.containers
    assert {m.mount_path: m.name for m in container.volume_mounts} == {
        "/workspace": "workspace", "/tmp": "tmp"}
    assert container.security_context.read_only_root_filesystem is True
    assert pod.security_context.run_as_non_root is True
    assert pod.termination_grace_period_seconds == 30
    # Deleting the run deletes the claim (garbage collection through the ownerReference).
    cluster.custom.delete_namespaced_custom_object("kubedag.io", "v1alpha1", namespace,
                                                   "pipelineruns", "shared")

    def claim_going() -> bool:
        claims = cluster.core.list_namespaced_persistent_volume_claim(namespace).items
        return all(c.metadata.deletion_timestamp for c in claims)

    wait_for(claim_going, what="the workspace claim deleted with its run", timeout=60)


def test_an_existing_claim_is_mounted_and_not_created(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    create_run(cluster, namespace, "reuse", {
        "workspace": {"persistentVolumeClaim": {"claimName": "team-data"}},
        "pipelineSpec": pipeline(cluster, [stage("a", **NOWHERE)])})
    job = wait_for(lambda: jobs_by_stage(cluster, namespace).get("a"), what="the Job")[0]
    volumes = {v.name: v for v in job.spec.template.spec.volumes}
    assert volumes["workspace"].persistent_volume_claim.claim_name == "team-data"
    assert not cluster.core.list_namespaced_persistent_volume_claim(namespace).items
    # The pass creates its Jobs before it writes the run's status: wait for the status.
    workspace = wait_for(lambda: (get_run(cluster, namespace, "reuse").get("status") or {})
                         .get("workspace"), what="status.workspace")
    assert workspace == {"claimName": "team-data", "created": False}
    patch_run(cluster, namespace, "reuse", {"cancel": True})


def waiting(reason: str, message: str) -> dict[str, Any]:
    return {"status": {"containerStatuses": [{
        "name": "stage", "image": "busybox", "imageID": "", "ready": False,
        "restartCount": 0, "state": {"waiting": {"reason": reason, "message": message}}}]}}


def test_a_pod_that_cannot_pull_its_image_fails_the_stage_after_the_grace_period(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    """The session's operator runs with KUBEDAG_START_FAILURE_GRACE_SECONDS=3."""
    create_run(cluster, namespace, "nopull", {"pipelineSpec": pipeline(cluster, [
        stage("pull", retry={"limit": 3, "initialDelaySeconds": 1}, **NOWHERE),
        stage("after", "pull")])})

    def the_pod() -> Any:
        pods = cluster.core.list_namespaced_pod(
            namespace, label_selector="kubedag.io/stage=pull").items
        return pods[0] if pods else None

    pod = wait_for(the_pod, what="the stage's pod")
    cluster.core.patch_namespaced_pod_status(
        pod.metadata.name, namespace,
        waiting("ImagePullBackOff", 'Back-off pulling image "registry.invalid/nope:1"'))
    run = wait_phase(cluster, namespace, "nopull", timeout=60)
    pull = stages_of(run)["pull"]
    # Not retried: the same image fails the same way.
    assert (pull["phase"], pull["reason"], pull["attempts"]) == ("Failed", "ImagePullFailed", 1)
    assert "ImagePullBackOff" in pull["message"]
    assert run["status"]["phase"] == "Failed"
    succeeded = condition(run, "Succeeded")
    assert succeeded is not None
    assert succeeded["message"].startswith("Stage pull (ImagePullFailed: ImagePullBackOff")
    wait_for(lambda: any("(ImagePullFailed)" in m for m in event_messages(
        cluster, namespace, "nopull", "StageFailed")), what="a StageFailed Event naming it")
    wait_for(lambda: not cluster.batch.list_namespaced_job(namespace).items,
             what="the stuck Job deleted")


def test_a_missing_secret_shows_while_waiting_then_fails_the_stage(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    create_run(cluster, namespace, "nosecret", {"pipelineSpec": pipeline(cluster, [
        stage("use-secret", **NOWHERE)])})
    pod = wait_for(lambda: (cluster.core.list_namespaced_pod(namespace).items or [None])[0],
                   what="the stage's pod")
    cluster.core.patch_namespaced_pod_status(
        pod.metadata.name, namespace,
        waiting("CreateContainerConfigError", 'secret "creds" not found'))
    # (Until the patch is seen the pod, which no node matches, shows the scheduler's message.)
    def waiting_message() -> str | None:
        message = stages_of(get_run(cluster, namespace, "nosecret")).get(
            "use-secret", {}).get("message") or ""
        return message if "not found" in message else None

    message = wait_for(waiting_message, what="the waiting message")
    assert message.startswith("CreateContainerConfigError"), message
    run = wait_phase(cluster, namespace, "nosecret", timeout=60)
    stage_ = stages_of(run)["use-secret"]
    assert (stage_["phase"], stage_["reason"]) == ("Failed", "ContainerConfigError")
