"""Pause, resume, cancel, dry run, fan-out, resumeFrom, and surviving `kill -9`."""

from __future__ import annotations

import json
import time

from kubernetes import watch

from tests.integration.operator_process import OperatorProcess
from tests.integration.runs import (
    condition,
    create_run,
    event_reasons,
    get_run,
    jobs_by_stage,
    patch_run,
    pipeline,
    stage,
    stages_of,
    wait_phase,
)
from tests.integration.support import Cluster, wait_for


def test_suspended_run_starts_nothing_until_resumed(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    create_run(cluster, namespace, "held", {"suspend": True, "pipelineSpec": pipeline(
        cluster, [stage("a"), stage("b", "a")])})
    run = wait_phase(cluster, namespace, "held", "Paused")
    assert condition(run, "Succeeded")["reason"] == "Paused"  # type: ignore[index]
    time.sleep(1)
    assert not cluster.batch.list_namespaced_job(namespace).items
    patch_run(cluster, namespace, "held", {"suspend": False})
    assert wait_phase(cluster, namespace, "held")["status"]["phase"] == "Succeeded"
    wait_for(lambda: {"Paused", "Resumed"} <= set(event_reasons(cluster, namespace, "held")),
             what="Paused and Resumed Events")


def test_pause_midway_lets_running_stages_finish_but_starts_no_new_ones(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    create_run(cluster, namespace, "midway", {"pipelineSpec": pipeline(
        cluster, [stage("a", duration="2s"), stage("b", "a")])})
    wait_for(lambda: jobs_by_stage(cluster, namespace).get("a"), what="stage a's Job")
    patch_run(cluster, namespace, "midway", {"suspend": True})
    wait_for(lambda: stages_of(get_run(cluster, namespace, "midway")).get("a", {}).get("phase")
             == "Succeeded", what="a to finish while paused", timeout=20)
    time.sleep(1)
    assert get_run(cluster, namespace, "midway")["status"]["phase"] == "Paused"
    assert "b" not in jobs_by_stage(cluster, namespace)
    patch_run(cluster, namespace, "midway", {"suspend": False})
    assert wait_phase(cluster, namespace, "midway")["status"]["phase"] == "Succeeded"


def test_cancel_deletes_running_jobs_and_ends_cancelled(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    create_run(cluster, namespace, "doomed", {"pipelineSpec": pipeline(
        cluster, [stage("long", duration="120s"), stage("next", "long")])})
    wait_for(lambda: jobs_by_stage(cluster, namespace).get("long"), what="the long Job")
    patch_run(cluster, namespace, "doomed", {"cancel": True})
    run = wait_phase(cluster, namespace, "doomed")
    assert run["status"]["phase"] == "Cancelled"
    assert condition(run, "Succeeded")["reason"] == "Cancelled"  # type: ignore[index]
    stages = stages_of(run)
    assert (stages["long"]["phase"], stages["long"]["reason"]) == ("Cancelled", "RunCancelled")
    assert (stages["next"]["phase"], stages["next"]["reason"]) == ("Skipped", "RunCancelled")
    wait_for(lambda: not cluster.batch.list_namespaced_job(namespace).items,
             what="Jobs deleted")
    # Background propagation: the garbage collector deletes the pods too, none is orphaned.
    wait_for(lambda: not cluster.core.list_namespaced_pod(namespace).items,
             what="the Job's pods deleted", timeout=60)


def test_dry_run_validates_every_job_server_side_and_creates_nothing(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    create_run(cluster, namespace, "rehearsal", {"dryRun": True, "pipelineSpec": pipeline(
        cluster, [stage("a", outputs={"n": 1}), stage("b", "a", args=["$(stages.a.outputs.n)"])])})
    run = wait_phase(cluster, namespace, "rehearsal")
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert condition(run, "Succeeded")["reason"] == "DryRunSucceeded"  # type: ignore[index]
    assert all("accepted" in s["message"] for s in stages_of(run).values())
    # A node selector value the Job API rejects (not a valid label value) fails the dry run.
    create_run(cluster, namespace, "bad-rehearsal", {"dryRun": True, "pipelineSpec": pipeline(
        cluster, [stage("a", nodeSelector={"zone": "not a label value!"})])})
    bad = wait_phase(cluster, namespace, "bad-rehearsal")
    assert bad["status"]["phase"] == "Failed"
    assert "nodeSelector" in stages_of(bad)["a"]["message"]
    assert not cluster.batch.list_namespaced_job(namespace).items


def test_fan_out_runs_one_indexed_job_over_the_items(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    create_run(cluster, namespace, "fan", {
        "params": {"files": ["a.txt", "b.txt", "c.txt", "d.txt", "e.txt"]},
        "pipelineSpec": pipeline(cluster, [
            stage("split"),
            stage("process", "split", fanOut={"itemsFrom": "$(params.files)", "batchSize": 2,
                                              "parallelism": 2}),
            stage("join", "process"),
        ], params=[{"name": "files", "type": "array"}]),
    })
    run = wait_phase(cluster, namespace, "fan")
    assert run["status"]["phase"] == "Succeeded", run["status"]
    (job,) = jobs_by_stage(cluster, namespace)["process"]
    assert job.spec.completion_mode == "Indexed"
    assert (job.spec.completions, job.spec.parallelism) == (3, 2)
    env = {e.name: e.value for e in job.spec.template.spec.containers[0].env}
    assert env["KUBEDAG_FANOUT_BATCH_SIZE"] == "2"
    assert stages_of(run)["process"]["fanOut"] == {"succeeded": 3, "failed": 0, "total": 3}


def test_resume_from_reuses_finished_stages_of_an_earlier_run(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    create_run(cluster, namespace, "first", {"pipelineSpec": pipeline(cluster, [
        stage("download", outputs={"bytes": 10}), stage("train", "download", exit_code=1),
    ])})
    assert wait_phase(cluster, namespace, "first")["status"]["phase"] == "Failed"
    create_run(cluster, namespace, "second", {"resumeFrom": "first", "pipelineSpec": pipeline(
        cluster, [stage("download", outputs={"bytes": 10}), stage("train", "download")])})
    run = wait_phase(cluster, namespace, "second")
    assert run["status"]["phase"] == "Succeeded", run["status"]
    download = stages_of(run)["download"]
    assert download["reason"] == "StageReused" and download["outputs"] == {"bytes": 10}
    jobs = {j.metadata.name for js in jobs_by_stage(cluster, namespace).values() for j in js}
    assert "second-download-1" not in jobs and "second-train-1" in jobs


def test_operator_killed_mid_run_resumes_without_recreating_jobs(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    chain = [stage("s0", duration="1s")] + [
        stage(f"s{i}", f"s{i - 1}", duration="1s") for i in range(1, 6)]
    create_run(cluster, namespace, "crashy", {"pipelineSpec": pipeline(cluster, chain)})
    wait_for(lambda: "s2" in jobs_by_stage(cluster, namespace), what="s2 started", timeout=30)
    running_operator.kill()
    time.sleep(2.5)  # s2 finishes while nobody watches
    running_operator.start()
    run = wait_phase(cluster, namespace, "crashy", timeout=60)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    jobs = jobs_by_stage(cluster, namespace)
    assert sorted(jobs) == [f"s{i}" for i in range(6)]
    for name, stage_jobs in jobs.items():
        assert [j.metadata.labels["kubedag.io/attempt"] for j in stage_jobs] == ["1"], name
    assert all(s["attempts"] == 1 for s in stages_of(run).values())


def test_worker_progress_on_the_pod_reaches_the_run_status(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    """The worker patches its own pod; the operator folds that into the stage checkpoint."""
    create_run(cluster, namespace, "progressing", {"pipelineSpec": pipeline(
        cluster, [stage("train", duration="4s")])})

    def running_pod() -> list:
        pods = cluster.core.list_namespaced_pod(
            namespace, label_selector="kubedag.io/stage=train").items
        return [p for p in pods if p.status.phase == "Running"]

    (pod,) = wait_for(running_pod, what="the stage's pod running")
    report = json.dumps({"fraction": 0.4, "message": "epoch 2/5", "time": time.time()})
    annotations = {"kubedag.io/progress": report}
    cluster.core.patch_namespaced_pod(pod.metadata.name, namespace,
                                      {"metadata": {"annotations": annotations}})
    wait_for(lambda: stages_of(get_run(cluster, namespace, "progressing"))["train"].get("progress")
             == 0.4, what="progress 0.4 in the checkpoint", timeout=10)
    assert wait_phase(cluster, namespace, "progressing")["status"]["phase"] == "Succeeded"


def test_finished_run_is_deleted_after_its_ttl(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    # Watched, not polled: with a TTL of 1 s the finished run can be gone between two polls.
    listed = cluster.custom.list_namespaced_custom_object("kubedag.io", "v1alpha1", namespace,
                                                          "pipelineruns")
    create_run(cluster, namespace, "ephemeral", {"ttlSecondsAfterFinished": 1,
                                                 "pipelineSpec": pipeline(cluster, [stage("a")])})
    phases: list[str | None] = []
    finished_at = None
    for event in watch.Watch().stream(
            cluster.custom.list_namespaced_custom_object, "kubedag.io", "v1alpha1", namespace,
            "pipelineruns", resource_version=listed["metadata"]["resourceVersion"],
            timeout_seconds=80):
        if event["type"] == "DELETED":
            break
        phases.append((event["object"].get("status") or {}).get("phase"))
        if phases[-1] == "Succeeded" and finished_at is None:
            finished_at = time.monotonic()
    else:
        raise AssertionError(f"the run was not deleted within 80 s; phases seen: {phases}")
    # Deleted by its TTL once it had finished, not before, and soon after.
    assert phases[-1] == "Succeeded", phases
    assert finished_at is not None and time.monotonic() - finished_at < 20
