"""kubedag.client against the test bed and the host operator: create, wait, watch, steer,
retry, list, logs, and errors that say what happened."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubedag.api import Pipeline, PipelineRun, RunPhase, StagePhase
from kubedag.client import Client, ClientError, NotFoundError
from kubedag.core import reasons
from kubedag.core.runview import EXIT_CANCELLED, EXIT_FAILED, EXIT_SUCCEEDED
from tests.integration.operator_process import OperatorProcess
from tests.integration.runs import get_run, pipeline, stage
from tests.integration.support import Cluster, wait_for


def a_run(cluster: Cluster, stages: list[dict[str, Any]], *, name: str | None = None,
          **spec: Any) -> PipelineRun:
    metadata = {"name": name} if name else {"generateName": "client-"}
    return PipelineRun.model_validate({"metadata": metadata, "spec": {
        "pipelineSpec": pipeline(cluster, stages), **spec}})


@pytest.fixture
def client(cluster: Cluster, namespace: str) -> Client:
    return Client(kubeconfig=cluster.kubeconfig, namespace=namespace)


def test_a_run_created_with_generate_name_waits_to_success_with_outputs(
    cluster: Cluster, client: Client, running_operator: OperatorProcess
) -> None:
    handle = client.create_run(a_run(cluster, [
        stage("b", "a", outputs={"rows": 7}), stage("a", outputs={"pages": 3})]))
    assert handle.name.startswith("client-") and handle.namespace == client.namespace
    result = handle.wait(timeout=60)
    assert result.phase == RunPhase.SUCCEEDED and result.exit_code == EXIT_SUCCEEDED
    assert list(result.stages) == ["a", "b"]  # DAG order, not declaration order
    assert result.outputs("a") == {"pages": 3} and result.outputs("b") == {"rows": 7}
    assert all(s.attempts == 1 and s.run_seconds is not None for s in result.stages.values())
    assert result.duration_seconds is not None


def test_a_failed_run_exits_1_and_retry_reuses_its_succeeded_stages(
    cluster: Cluster, client: Client, running_operator: OperatorProcess
) -> None:
    handle = client.create_run(a_run(cluster, [stage("ok"), stage("bad", "ok", exit_code=3)],
                                     name="flaky", params={}))
    result = handle.wait(timeout=60)
    assert result.exit_code == EXIT_FAILED
    assert result.stages["bad"].phase == StagePhase.FAILED
    with pytest.raises(ClientError, match="no stage 'nope'"):
        handle.retry(from_stage="nope")
    again = handle.retry(from_stage="bad")
    assert again.name == "flaky-retry-1"
    assert again.get().spec.resume_from == "flaky"
    retried = again.wait(timeout=60)
    assert retried.stages["ok"].reason == reasons.STAGE_REUSED
    assert retried.stages["bad"].attempts == 1
    # From a stage that succeeded: it runs again (spec.rerunStages), and so does all after it.
    from_ok = handle.retry(from_stage="ok")
    assert from_ok.get().spec.rerun_stages == ["ok"]
    rerun = from_ok.wait(timeout=60)
    assert rerun.stages["ok"].phase == StagePhase.SUCCEEDED
    assert rerun.stages["ok"].reason != reasons.STAGE_REUSED
    assert rerun.stages["bad"].phase == StagePhase.FAILED
    # A retry of the retry counts on from the original name.
    assert again.retry().name == "flaky-retry-3"


def test_wait_gives_up_with_timeout_error_and_cancel_ends_the_run_cancelled(
    cluster: Cluster, client: Client, running_operator: OperatorProcess
) -> None:
    handle = client.create_run(a_run(cluster, [stage("long", duration="120s")]))
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="did not finish within 1 s"):
        handle.wait(timeout=1)
    assert time.monotonic() - started < 5
    handle.cancel()
    result = handle.wait(timeout=60)
    assert result.phase == RunPhase.CANCELLED and result.exit_code == EXIT_CANCELLED


def test_suspend_and_resume(
    cluster: Cluster, client: Client, running_operator: OperatorProcess
) -> None:
    handle = client.create_run(a_run(cluster, [stage("a", duration="1s"), stage("b", "a")]))
    handle.suspend()
    wait_for(lambda: handle.status().phase == RunPhase.PAUSED, what="Paused")
    assert get_run(cluster, client.namespace, handle.name)["spec"]["suspend"] is True
    handle.resume()
    assert handle.wait(timeout=60).phase == RunPhase.SUCCEEDED


def test_watch_without_a_terminal_prints_one_line_per_transition(
    cluster: Cluster, client: Client, running_operator: OperatorProcess
) -> None:
    handle = client.create_run(a_run(cluster, [stage("a"), stage("b", "a")], name="lines"))
    out = io.StringIO()
    result = handle.watch(stream=out, timeout=60)
    assert result.phase == RunPhase.SUCCEEDED
    lines = out.getvalue().splitlines()
    assert any(" a Succeeded" in line for line in lines), lines
    assert any(" b Succeeded" in line for line in lines), lines
    assert lines[-1].split(" ", 1)[1].startswith("run lines Succeeded"), lines
    assert len(lines) == len(set(lines)), "a transition was printed twice"


def test_latest_list_and_not_found(
    cluster: Cluster, client: Client, running_operator: OperatorProcess
) -> None:
    with pytest.raises(NotFoundError, match=f"no runs in namespace {client.namespace}"):
        client.run("@latest")
    first = client.create_run(a_run(cluster, [stage("a")], name="first"))
    time.sleep(1.1)  # creation timestamps have a resolution of one second
    second = client.create_run(a_run(cluster, [stage("a")], name="second"))
    assert client.run("@latest").name == second.name
    assert [r.name for r in client.list_runs()] == ["second", "first"]
    first.wait(timeout=60)
    with pytest.raises(NotFoundError, match="reading run missing in namespace"):
        client.run("missing")


def test_apply_pipeline_creates_then_replaces(
    cluster: Cluster, client: Client, running_operator: OperatorProcess
) -> None:
    spec = pipeline(cluster, [stage("a")])
    client.apply_pipeline(Pipeline.model_validate({"metadata": {"name": "p"}, "spec": spec}))
    spec["stages"].append(stage("b", "a"))
    client.apply_pipeline(Pipeline.model_validate({"metadata": {"name": "p"}, "spec": spec}))
    assert [s.name for s in client.get_pipeline("p").spec.stages] == ["a", "b"]
    run = client.create_run(PipelineRun.model_validate(
        {"metadata": {"name": "by-ref"}, "spec": {"pipelineRef": {"name": "p"}}}))
    assert list(run.wait(timeout=60).stages) == ["a", "b"]
    assert [r.name for r in client.list_runs(pipeline="p")] == ["by-ref"]
    assert client.list_runs(pipeline="other") == []


def test_namespace_comes_from_the_kubeconfig_context(cluster: Cluster, namespace: str,
                                                      tmp_path: Path) -> None:
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    current = config["current-context"]
    for entry in config["contexts"]:
        if entry["name"] == current:
            entry["context"]["namespace"] = namespace
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    assert Client(kubeconfig=path).namespace == namespace
    assert Client(kubeconfig=path, namespace="other").namespace == "other"
    with pytest.raises(ClientError, match="no context 'nope' in the kubeconfig"):
        Client(kubeconfig=path, context="nope")
    with pytest.raises(ClientError, match="kubeconfig"):
        Client(kubeconfig=tmp_path / "missing")


def test_a_stale_watch_is_reported_gone_so_that_updates_relist(
    cluster: Cluster, client: Client, running_operator: OperatorProcess
) -> None:
    handle = client.create_run(a_run(cluster, [stage("a")], name="stale"))
    handle.wait(timeout=60)
    # resourceVersion 1 is older than anything the API server still remembers.
    events = list(handle._watch("1", window=2))
    assert events == [(None, "")]


def test_logs_say_when_pods_have_no_logs_and_show_the_termination_message(
    cluster: Cluster, client: Client, running_operator: OperatorProcess
) -> None:
    handle = client.create_run(a_run(cluster, [
        stage("a", outputs={"pages": 3}), stage("b", "a", exit_code=2),
        stage("c", "b")], name="logs"))
    handle.wait(timeout=60)
    lines = [str(line) for line in handle.logs()]
    text = "\n".join(lines)
    assert lines[0].startswith("[a:0] "), text
    # kwok's nodes keep no logs: said as such, not as a missing pod.
    assert "[a:0] no logs from pod logs-a-1-" in text and "is gone" not in text
    assert '[a:0] exited 0 (Completed), outputs: {"pages": 3}' in text
    assert "[b:0] exited 2 (Error)" in text
    assert "[c:0] skipped (UpstreamFailed" in text
    # Pods deleted (as a Job's TTL does): the checkpoint speaks for them.
    cluster.core.delete_collection_namespaced_pod(client.namespace, grace_period_seconds=0)
    wait_for(lambda: not cluster.core.list_namespaced_pod(client.namespace).items,
             what="pods gone")
    gone = "\n".join(str(line) for line in handle.logs(stage="a"))
    assert "[a:0] pod is gone" in gone and '"pages": 3' in gone, gone
    with pytest.raises(ClientError, match="no stage 'zzz'"):
        list(handle.logs(stage="zzz"))
