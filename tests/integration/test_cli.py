"""The installed `kubedag` command, run as a subprocess against the test bed and the host
operator: exit codes one by one (0 succeeded, 1 failed, 2 cancelled, 3 timed out, 4 usage or
client error), reading, logs, steering and retrying."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from tests.integration.operator_process import OperatorProcess
from tests.integration.runs import get_run, pipeline, stage
from tests.integration.support import Cluster, wait_for

KUBEDAG = Path(sys.executable).parent / "kubedag"
REPO = Path(__file__).resolve().parents[2]


class Cli:
    """`kubedag --kubeconfig <test bed> -n <namespace> ...`, and pipeline files to feed it."""

    def __init__(self, cluster: Cluster, namespace: str, tmp_path: Path) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.tmp_path = tmp_path

    def args(self, *args: str) -> list[str]:
        return [str(KUBEDAG), "--kubeconfig", str(self.cluster.kubeconfig),
                "-n", self.namespace, *args]

    def __call__(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.args(*args), capture_output=True, text=True,
                              timeout=timeout, check=False)

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(self.args(*args), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def pipeline_file(self, name: str, stages: list[dict[str, Any]], **fields: Any) -> str:
        path = self.tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({
            "apiVersion": "kubedag.io/v1alpha1", "kind": "Pipeline",
            "metadata": {"name": name}, "spec": pipeline(self.cluster, stages, **fields)}))
        return str(path)

    def json(self, *args: str) -> Any:
        done = self(*args, "-o", "json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


@pytest.fixture
def cli(cluster: Cluster, namespace: str, tmp_path: Path) -> Cli:
    return Cli(cluster, namespace, tmp_path)


def stage_started(cli: Cli, run: str, stage_name: str) -> bool:
    """Whether the run exists and its stage has started (the run may not exist yet)."""
    try:
        status = get_run(cli.cluster, cli.namespace, run).get("status") or {}
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return stage_name in (status.get("stages") or {})


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
    process.communicate()


def assert_one_line_error(done: subprocess.CompletedProcess[str], code: int = 4) -> str:
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


def created_name(done: subprocess.CompletedProcess[str]) -> str:
    line = next(s for s in (done.stdout + done.stderr).splitlines() if s.startswith("run "))
    return line.split()[1]


def test_submit_wait_succeeds_with_exit_0_and_get_ls_read_it_back(
    cli: Cli, running_operator: OperatorProcess
) -> None:
    file = cli.pipeline_file("docs", [stage("report", "extract", outputs={"pages": 3}),
                                      stage("extract")], finally_=[stage("notify")])
    done = cli("submit", "-f", file, "--wait")
    assert done.returncode == 0, done.stderr
    name = created_name(done)
    assert name.startswith("docs-")
    # The tree: run at the root, stages in DAG order, finally in its own branch.
    tree = [line for line in done.stdout.splitlines() if "─" in line]
    assert [line.split()[2] for line in tree[:2]] == ["extract", "report"], done.stdout
    assert "finally" in tree[2] and "notify" in tree[3]
    assert "1/1" in tree[0]  # attempt n/m
    got = cli.json("get", name)
    assert got["phase"] == "Succeeded" and got["exitCode"] == 0
    assert list(got["stages"]) == ["extract", "report", "notify"]
    assert got["stages"]["report"]["outputs"] == {"pages": 3}
    assert got["stages"]["notify"]["isFinally"] is True
    assert yaml.safe_load(cli("get", "@latest", "-o", "yaml").stdout)["name"] == name
    listed = cli("ls")
    assert listed.returncode == 0 and name in listed.stdout and "docs" in listed.stdout
    assert [r["name"] for r in cli.json("ls", "--pipeline", "docs")] == [name]
    assert cli.json("ls", "--pipeline", "other") == []
    # Global options after the command, as with kubectl.
    late = subprocess.run([str(KUBEDAG), "get", name, "-n", cli.namespace, "--kubeconfig",
                           str(cli.cluster.kubeconfig), "-o", "json"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert late.returncode == 0 and json.loads(late.stdout)["name"] == name, late.stderr


def test_submit_wait_of_a_failing_run_exits_1_and_watch_the_same(
    cli: Cli, running_operator: OperatorProcess
) -> None:
    file = cli.pipeline_file("bad", [stage("ok"), stage("boom", "ok", exit_code=3)])
    waited = cli("submit", "-f", file, "--wait")
    assert waited.returncode == 1, waited.stderr
    assert "boom" in waited.stdout and "Failed" in waited.stdout
    watched = cli("submit", "-f", file, "--watch")
    assert watched.returncode == 1, watched.stderr
    # Without a terminal: one line per transition, the run's end last.
    lines = watched.stdout.strip().splitlines()
    assert any("boom Failed" in line for line in lines), lines
    assert " run " in lines[-1] and "Failed" in lines[-1], lines
    assert cli("watch", created_name(watched)).returncode == 1


def test_a_run_cancelled_from_another_process_exits_2(
    cli: Cli, running_operator: OperatorProcess
) -> None:
    file = cli.pipeline_file("slow", [stage("long", duration="120s"), stage("after", "long")])
    waiting = cli.start("submit", "-f", file, "--name", "slow-1", "--watch")
    try:
        wait_for(lambda: stage_started(cli, "slow-1", "long"), what="the long stage to start",
                 timeout=30)
        done = cli("cancel", "slow-1")
        assert done.returncode == 0 and "cancelled" in done.stdout, done.stderr
        out, err = waiting.communicate(timeout=60)
    finally:
        stop(waiting)
    assert waiting.returncode == 2, (out, err)
    assert "run slow-1 Cancelled" in out


def test_timeouts_exit_3_for_the_runs_deadline_and_for_timeout(
    cli: Cli, running_operator: OperatorProcess
) -> None:
    deadline = cli.pipeline_file("deadline", [stage("long", duration="60s")], timeoutSeconds=1)
    done = cli("submit", "-f", deadline, "--wait")
    assert done.returncode == 3, (done.stdout, done.stderr)
    slow = cli.pipeline_file("patient", [stage("long", duration="60s")])
    started = time.monotonic()
    done = cli("submit", "-f", slow, "--watch", "--timeout", "1")
    assert done.returncode == 3, (done.stdout, done.stderr)
    assert "timed out" in done.stderr
    assert time.monotonic() - started < 20
    assert cli("watch", created_name(done), "--timeout", "1").returncode == 3


def test_usage_and_client_errors_exit_4_with_one_line(
    cli: Cli, running_operator: OperatorProcess, tmp_path: Path
) -> None:
    file = cli.pipeline_file("typed", [stage("a")], params=[
        {"name": "n", "type": "int", "default": 1}])
    assert "missing" in assert_one_line_error(cli("get", "missing"))
    assert "no such file" in assert_one_line_error(cli("submit", "-f", "nope.yaml"))
    assert "-p files" in assert_one_line_error(
        cli("submit", "-f", file, "-p", "files=[a, b"))
    assert "expected NAME=VALUE" in assert_one_line_error(cli("submit", "-f", file, "-p", "n"))
    assert "spec.params.n: expected int" in assert_one_line_error(
        cli("submit", "-f", file, "-p", "n=three"))
    assert "spec.params.other: not declared" in assert_one_line_error(
        cli("submit", "-f", file, "-p", "other=1"))
    assert "No such option" in assert_one_line_error(cli("get", "x", "--bogus"))
    assert "exclude each other" in assert_one_line_error(
        cli("submit", "-f", file, "--wait", "--watch"))
    invalid = REPO / "examples" / "invalid" / "unknown-dependency.yaml"
    assert "unknown stage 'missing'" in assert_one_line_error(
        cli("submit", "-f", str(invalid)))
    unreachable = tmp_path / "unreachable"
    config = yaml.safe_load(cli.cluster.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
    unreachable.write_text(yaml.safe_dump(config))
    done = subprocess.run([str(KUBEDAG), "--kubeconfig", str(unreachable), "ls"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert "cannot reach the API server" in assert_one_line_error(done)


def test_lint_and_graph_of_files_work_offline(cli: Cli, tmp_path: Path) -> None:
    offline = [str(KUBEDAG), "--kubeconfig", str(tmp_path / "none")]
    good = REPO / "examples" / "document-pipeline.yaml"
    done = subprocess.run([*offline, "lint", str(good)], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0 and "valid (7 stages)" in done.stdout, done.stderr
    bad = REPO / "examples" / "invalid" / "duplicate-stage.yaml"
    done = subprocess.run([*offline, "lint", str(bad), "-o", "json"], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 4
    report = json.loads(done.stdout)
    assert report["valid"] is False and "duplicate stage name" in report["errors"][0]
    done = subprocess.run([*offline, "graph", str(good), "--format", "mermaid"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0 and done.stdout.startswith("flowchart LR"), done.stderr


def test_params_are_typed_from_yaml_and_json(
    cli: Cli, running_operator: OperatorProcess
) -> None:
    file = cli.pipeline_file("typed", [stage("a")], params=[
        {"name": "n", "type": "int"}, {"name": "files", "type": "array"},
        {"name": "version", "type": "string"}, {"name": "debug", "type": "bool",
                                                "default": False}])
    done = cli("submit", "-f", file, "--name", "typed-1", "-p", "n=3",
               "-p", 'files=["a","b"]', "-p", "version=1.10", "-p", "debug=true", "--wait")
    assert done.returncode == 0, done.stderr
    params = get_run(cli.cluster, cli.namespace, "typed-1")["spec"]["params"]
    assert params == {"n": 3, "files": ["a", "b"], "version": "1.10", "debug": True}


def test_logs_prefix_lines_and_say_when_pods_are_gone(
    cli: Cli, running_operator: OperatorProcess
) -> None:
    file = cli.pipeline_file("logged", [
        stage("first", outputs={"rows": 2}),
        stage("fan", "first", fanOut={"items": [1, 2]}, exit_code=4)])
    done = cli("submit", "-f", file, "--name", "logged-1", "--wait")
    assert done.returncode == 1, done.stderr
    logs = cli("logs", "logged-1")
    assert logs.returncode == 0, logs.stderr
    lines = logs.stdout.splitlines()
    assert lines[0].startswith("[first:0] "), lines
    assert '[first:0] exited 0 (Completed), outputs: {"rows": 2}' in lines
    assert {line.split("]")[0] + "]" for line in lines if line.startswith("[fan")} == {
        "[fan:0]", "[fan:1]"}
    only = cli("logs", "logged-1", "--stage", "fan", "--index", "1").stdout.splitlines()
    assert only and all(line.startswith("[fan:1]") for line in only), only
    records = [json.loads(line) for line in cli("logs", "logged-1", "-o", "json").stdout
               .splitlines()]
    assert records[0]["stage"] == "first" and records[0]["note"] is True
    # Following a finished run ends by itself.
    assert cli("logs", "logged-1", "-f", timeout=30).returncode == 0
    cli.cluster.core.delete_collection_namespaced_pod(cli.namespace, grace_period_seconds=0)
    wait_for(lambda: not cli.cluster.core.list_namespaced_pod(cli.namespace).items,
             what="the pods gone")
    gone = cli("logs", "logged-1", "--stage", "first").stdout
    assert "[first:0] pod is gone" in gone and '"rows": 2' in gone, gone
    assert "no stage 'zzz'" in assert_one_line_error(cli("logs", "logged-1", "--stage", "zzz"))


def test_logs_follow_waits_for_stages_that_start_later(
    cli: Cli, running_operator: OperatorProcess
) -> None:
    file = cli.pipeline_file("later", [stage("a", duration="2s"), stage("b", "a")])
    follower = None
    try:
        assert cli("submit", "-f", file, "--name", "later-1").returncode == 0
        follower = cli.start("logs", "later-1", "-f")
        out, err = follower.communicate(timeout=60)
    finally:
        if follower is not None:
            stop(follower)
    assert follower.returncode == 0, err
    prefixes = [line.split("]")[0] + "]" for line in out.splitlines()]
    assert prefixes.index("[a:0]") < prefixes.index("[b:0]"), out


def test_suspend_resume_and_retry_from_a_stage(
    cli: Cli, running_operator: OperatorProcess
) -> None:
    file = cli.pipeline_file("steer", [stage("a", duration="4s"), stage("b", "a", exit_code=2)])
    assert cli("submit", "-f", file, "--name", "steer-1").returncode == 0
    done = cli("suspend", "steer-1")
    assert done.returncode == 0 and "suspended" in done.stdout
    wait_for(lambda: cli.json("get", "steer-1")["phase"] == "Paused", what="Paused")
    assert cli("resume", "steer-1").returncode == 0
    assert cli("watch", "steer-1").returncode == 1
    assert "no stage 'x'" in assert_one_line_error(cli("retry", "steer-1", "--from", "x"))
    done = cli("retry", "steer-1", "--from", "b", "--wait", "-o", "json")
    assert done.returncode == 1, done.stderr
    result = json.loads(done.stdout)
    assert result["name"] == "steer-1-retry-1"
    assert result["stages"]["a"]["reason"] == "StageReused"
    assert get_run(cli.cluster, cli.namespace, "steer-1-retry-1")["spec"]["resumeFrom"] == \
        "steer-1"
    # From a stage that succeeded: it runs again, with everything after it.
    done = cli("retry", "steer-1", "--from", "a", "--wait", "-o", "json")
    assert done.returncode == 1, done.stderr
    stages = json.loads(done.stdout)["stages"]
    assert stages["a"]["phase"] == "Succeeded" and stages["a"]["reason"] != "StageReused"
    assert stages["a"]["attempts"] == 1


def test_graph_of_a_run_is_coloured_by_phase(
    cli: Cli, running_operator: OperatorProcess
) -> None:
    file = cli.pipeline_file("drawn", [stage("a"), stage("b", "a", exit_code=1)])
    assert cli("submit", "-f", file, "--name", "drawn-1", "--wait").returncode == 1
    dot = cli("graph", "drawn-1", "--format", "dot")
    assert dot.returncode == 0, dot.stderr
    assert '"a" [style=filled, fillcolor="#c8e6c9"];' in dot.stdout  # Succeeded: green
    assert '"b" [style=filled, fillcolor="#ffcdd2"];' in dot.stdout  # Failed: red
    mermaid = cli("graph", "@latest", "--format", "mermaid").stdout
    assert "style s1 fill:#ffcdd2" in mermaid and "b<br/>Failed" in mermaid


def test_explain_says_why_a_stage_hit_or_missed_and_the_cache_flags(
    cli: Cli, running_operator: OperatorProcess
) -> None:
    def file(language: str) -> str:
        return cli.pipeline_file("cached", [
            stage("extract", args=["--language", language], outputs={"pages": 3},
                  cache={"maxAge": "1h"}),
            stage("report", "extract")])

    first = created_name(cli("submit", "-f", file("en"), "--wait"))
    second = created_name(cli("submit", "-f", file("en"), "--wait"))
    verdicts = {v["stage"]: v for v in cli.json("explain", second)}
    assert verdicts["extract"]["verdict"] == "hit", verdicts
    assert verdicts["extract"]["detail"].startswith(f"from run {first}, filled ")
    assert verdicts["report"]["verdict"] == "not cached"

    changed = created_name(cli("submit", "-f", file("de"), "--wait"))
    shown = cli("explain", changed)
    assert shown.returncode == 0, shown.stderr
    assert "miss" in shown.stdout and "args changed" in shown.stdout.replace("\n", " ")

    no_cache = cli.json("explain", created_name(cli("submit", "-f", file("en"), "--wait",
                                                    "--no-cache")))
    assert no_cache[0]["detail"] == "Disabled"
    overwrite = cli.json("explain", created_name(cli("submit", "-f", file("en"), "--wait",
                                                     "--overwrite-cache")))
    assert overwrite[0]["detail"] == "Overwrite"
    assert_one_line_error(cli("submit", "-f", file("en"), "--no-cache", "--overwrite-cache"))
