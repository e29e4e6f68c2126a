"""Local runs end to end: real processes, the real worker, decisions from core.decide().

Each test runs a small pipeline to its end (a few seconds at most) and checks what the core
decided from what the processes did: outputs, skips, retries, deadlines, fan-out, finally
stages, non-critical failures and cancellation.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from pathlib import Path

import pytest

from kubedag.api import (
    CONDITION_SUCCEEDED,
    PipelineRunStatus,
    RunPhase,
    StagePhase,
    find_condition,
)
from kubedag.core import reasons
from tests.unit.local.support import local, phases, python_stage, reporting

REPO = Path(__file__).resolve().parents[3]
DESCRIBE = "tests.unit.local.processors:describe"


@pytest.fixture(autouse=True)
def _importable_test_processors(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker imports `tests.unit.local.processors` from the repository, wherever pytest
    was started."""
    monkeypatch.setenv("PYTHONPATH", str(REPO))


def _pids(workspace: Path, stage: str) -> list[int]:
    return [int(p.read_text()) for p in workspace.glob(f"{stage}-*.pid")]


def _gone(pid: int) -> bool:
    """Ended: no such process, or a zombie (dead, waiting for whoever adopted it to reap it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rpartition(")")[2].split()[0] == "Z"


def test_outputs_flow_downstream_through_args_and_inputs() -> None:
    result = local([
        reporting("count", {"n": 3, "label": "abc"}),
        python_stage(
            "double",
            "import sys\n"
            "inputs = json.loads(os.environ['KUBEDAG_INPUTS'])\n"
            "report(double=int(sys.argv[1]) * 2, label=inputs['count']['label'],"
            " run=os.environ['KUBEDAG_RUN'], attempt=os.environ['KUBEDAG_ATTEMPT'],"
            " greeting=json.loads(os.environ['KUBEDAG_PARAMS'])['greeting'])",
            args=["$(stages.count.outputs.n)"], dependsOn=["count"]),
        {"name": "echo", "processor": DESCRIBE, "dependsOn": ["double"]},
    ], values={"greeting": "hi"}, params=[{"name": "greeting", "type": "string"}])

    assert result.status.phase == RunPhase.SUCCEEDED
    stages = result.status.stages or {}
    assert stages["count"].outputs == {"n": 3, "label": "abc"}
    assert stages["double"].outputs == {"double": 6, "label": "abc", "run": "t",
                                        "attempt": "1", "greeting": "hi"}
    # The real worker ran the processor: its inputs are the upstream outputs; no pod to patch.
    echoed = stages["echo"].outputs or {}
    assert echoed["inputs"] == {"double": stages["double"].outputs}
    assert echoed["podName"] is None
    assert echoed["index"] == -1


def test_a_false_when_skips_the_stage_and_its_dependents_still_run() -> None:
    result = local([
        reporting("scan", {"scanned": 0}),
        reporting("ocr", {"pages": 1}, dependsOn=["scan"], when="stages.scan.outputs.scanned > 0"),
        reporting("index", {"done": True}, dependsOn=["ocr"]),
    ])
    assert result.status.phase == RunPhase.SUCCEEDED
    assert phases(result) == {"scan": StagePhase.SUCCEEDED, "ocr": StagePhase.SKIPPED,
                              "index": StagePhase.SUCCEEDED}
    assert (result.status.stages or {})["ocr"].reason == reasons.WHEN_FALSE


def test_a_retry_after_its_backoff_succeeds_on_the_second_attempt(tmp_path: Path) -> None:
    # The first attempt leaves a mark in the workspace and fails; the second finds it.
    flaky = python_stage(
        "flaky",
        "import time\n"
        "ws = os.environ['KUBEDAG_WORKSPACE']\n"
        "open(os.path.join(ws, 'attempts'), 'a').write(f'{time.time()}\\n')\n"
        "if not os.path.exists(os.path.join(ws, 'mark')):\n"
        "    open(os.path.join(ws, 'mark'), 'w').close()\n"
        "    raise SystemExit(3)\n"
        "report(attempt=int(os.environ['KUBEDAG_ATTEMPT']))",
        retry={"limit": 2, "strategy": "fixed", "initialDelaySeconds": 1})
    result = local([flaky], workspace=tmp_path)

    assert result.status.phase == RunPhase.SUCCEEDED
    checkpoint = (result.status.stages or {})["flaky"]
    assert (checkpoint.phase, checkpoint.attempts, checkpoint.outputs) == (
        StagePhase.SUCCEEDED, 2, {"attempt": 2})
    first, second = (float(t) for t in (tmp_path / "attempts").read_text().split())
    assert second - first >= 1.0  # the backoff was waited for


def test_a_stage_timeout_kills_the_process_and_fails_the_stage(tmp_path: Path) -> None:
    started = time.monotonic()
    result = local([
        python_stage("slow", "open(os.path.join(os.environ['KUBEDAG_WORKSPACE'],"
                     " f'slow-{os.getpid()}.pid'), 'w').write(str(os.getpid()))\n"
                     "import time; time.sleep(60)", timeoutSeconds=1),
        reporting("after", {}, dependsOn=["slow"]),
    ], workspace=tmp_path)

    # Well before the stage's own 60 s: the deadline stopped it (a loose bound: machines are busy).
    assert time.monotonic() - started < 30
    assert result.status.phase == RunPhase.FAILED
    slow = (result.status.stages or {})["slow"]
    assert (slow.phase, slow.reason) == (StagePhase.FAILED, reasons.DEADLINE_EXCEEDED)
    assert (result.status.stages or {})["after"].reason == reasons.UPSTREAM_FAILED
    assert all(_gone(pid) for pid in _pids(tmp_path, "slow"))


def test_fan_out_runs_one_process_per_index_and_aggregates_outputs(tmp_path: Path) -> None:
    result = local([
        {"name": "split", "processor": DESCRIBE,
         "fanOut": {"items": ["a", "b", "c", "d", "e"], "batchSize": 2, "parallelism": 2}},
    ], workspace=tmp_path)

    assert result.status.phase == RunPhase.SUCCEEDED
    checkpoint = (result.status.stages or {})["split"]
    outputs = checkpoint.outputs or {}
    assert outputs["count"] == 3
    assert [(r["index"], r["items"]) for r in outputs["results"]] == [
        (0, ["a", "b"]), (1, ["c", "d"]), (2, ["e"])]
    assert len(set(_pids(tmp_path, "split"))) == 3  # one process per index
    assert checkpoint.fan_out is not None
    assert (checkpoint.fan_out.succeeded, checkpoint.fan_out.total) == (3, 3)


def test_fan_out_keeps_to_its_parallelism(tmp_path: Path) -> None:
    timed = python_stage(
        "timed",
        "import time\n"
        "start = time.time(); time.sleep(0.3)\n"
        "open(os.path.join(os.environ['KUBEDAG_WORKSPACE'],"
        " os.environ['JOB_COMPLETION_INDEX']), 'w').write(f'{start} {time.time()}')",
        fanOut={"items": [1, 2, 3, 4], "parallelism": 2})
    result = local([timed], workspace=tmp_path)

    assert result.status.phase == RunPhase.SUCCEEDED
    spans = [tuple(map(float, (tmp_path / str(i)).read_text().split())) for i in range(4)]
    most = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert most == 2


def test_finally_stages_run_after_a_critical_failure() -> None:
    result = local(
        [python_stage("broken", "raise SystemExit(3)"),
         reporting("next", {}, dependsOn=["broken"])],
        **{"finally": [reporting("cleanup", {"cleaned": True})]})

    assert result.status.phase == RunPhase.FAILED
    assert phases(result) == {"broken": StagePhase.FAILED, "next": StagePhase.SKIPPED,
                              "cleanup": StagePhase.SUCCEEDED}
    broken = (result.status.stages or {})["broken"]
    assert (broken.reason, broken.exit_code) == (reasons.EXIT_CODE, 3)
    assert (result.status.stages or {})["cleanup"].outputs == {"cleaned": True}


def test_a_non_critical_failure_skips_its_dependents_and_the_run_succeeds_degraded() -> None:
    result = local([
        python_stage("optional", "raise SystemExit(1)", critical=False),
        reporting("uses-it", {}, dependsOn=["optional"]),
        reporting("other", {"ok": 1}),
    ])
    assert result.status.phase == RunPhase.SUCCEEDED
    assert phases(result) == {"optional": StagePhase.FAILED, "uses-it": StagePhase.SKIPPED,
                              "other": StagePhase.SUCCEEDED}
    degraded = find_condition(result.status.conditions or [], reasons.CONDITION_DEGRADED)
    assert degraded is not None and "optional" in degraded.message


def test_cancel_stops_the_running_stage_and_skips_the_rest(tmp_path: Path) -> None:
    cancel = threading.Event()

    def cancel_once_running() -> None:
        give_up = time.monotonic() + 10
        while not _pids(tmp_path, "long") and time.monotonic() < give_up:
            time.sleep(0.02)
        cancel.set()

    long = python_stage("long", "open(os.path.join(os.environ['KUBEDAG_WORKSPACE'],"
                        " f'long-{os.getpid()}.pid'), 'w').write(str(os.getpid()))\n"
                        "import time; time.sleep(60)")
    threading.Thread(target=cancel_once_running, daemon=True).start()
    started = time.monotonic()
    result = local([long, reporting("then", {}, dependsOn=["long"])],
                   workspace=tmp_path, cancel=cancel)

    # Well before the stage's own 60 s: the cancel stopped it (a loose bound: machines are busy).
    assert time.monotonic() - started < 30
    assert result.status.phase == RunPhase.CANCELLED
    stages = result.status.stages or {}
    assert (stages["long"].phase, stages["long"].reason) == (StagePhase.CANCELLED,
                                                             reasons.RUN_CANCELLED)
    assert (stages["then"].phase, stages["then"].reason) == (StagePhase.SKIPPED,
                                                             reasons.RUN_CANCELLED)
    assert all(_gone(pid) for pid in _pids(tmp_path, "long"))


def test_the_run_timeout_stops_the_run() -> None:
    result = local([python_stage("slow", "import time; time.sleep(60)")], timeoutSeconds=1)
    assert result.status.phase == RunPhase.FAILED
    condition = find_condition(result.status.conditions or [], CONDITION_SUCCEEDED)
    assert condition is not None and condition.reason == reasons.RUN_TIMEOUT
    assert (result.status.stages or {})["slow"].reason == reasons.RUN_TIMED_OUT


def test_on_status_sees_every_change_and_ends_with_the_final_status() -> None:
    seen: list[PipelineRunStatus] = []
    result = local([reporting("a", {"x": 1}), reporting("b", {}, dependsOn=["a"])],
                   on_status=seen.append)
    assert seen[-1] == result.status
    assert seen[0].phase == RunPhase.RUNNING
    assert all(a != b for a, b in itertools.pairwise(seen))  # only changes


def test_a_stage_that_runs_an_image_entrypoint_fails_with_a_clear_reason() -> None:
    result = local([{"name": "entry", "image": "busybox:1.36", "args": ["echo", "hi"]}])
    entry = (result.status.stages or {})["entry"]
    assert (entry.phase, entry.reason) == (StagePhase.FAILED, reasons.CONTAINER_CONFIG_ERROR)
    assert "busybox:1.36" in (entry.message or "")
    assert "runs no images" in (entry.message or "")


def test_a_secret_env_comes_from_the_host_or_fails_the_stage(
        monkeypatch: pytest.MonkeyPatch) -> None:
    stage = python_stage("use-secret", "report(token=os.environ['API_TOKEN'])",
                         env=[{"name": "API_TOKEN",
                               "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}}])
    monkeypatch.delenv("API_TOKEN", raising=False)
    missing = (local([stage]).status.stages or {})["use-secret"]
    assert (missing.phase, missing.reason) == (StagePhase.FAILED, reasons.CONTAINER_CONFIG_ERROR)
    assert "Secret creds key token" in (missing.message or "")

    monkeypatch.setenv("API_TOKEN", "s3cret")
    given = (local([stage]).status.stages or {})["use-secret"]
    assert (given.phase, given.outputs) == (StagePhase.SUCCEEDED, {"token": "s3cret"})


def test_a_command_that_does_not_exist_fails_like_a_container_start_error() -> None:
    result = local([{"name": "nope", "image": "x", "command": ["/no/such/program"]}])
    nope = (result.status.stages or {})["nope"]
    assert (nope.phase, nope.exit_code) == (StagePhase.FAILED, 128)
    assert "/no/such/program" in (nope.message or "")


def test_a_command_written_for_the_container_workspace_uses_the_local_one(
        tmp_path: Path) -> None:
    # examples/workspace-run.yaml's shape.
    result = local([
        {"name": "write", "image": "busybox:1.36",
         "command": ["sh", "-c", "echo hello > /workspace/greeting"]},
        {"name": "read", "image": "busybox:1.36", "command": ["cat", "/workspace/greeting"],
         "dependsOn": ["write"]},
    ], workspace=tmp_path)
    assert result.status.phase == RunPhase.SUCCEEDED
    assert (tmp_path / "greeting").read_text() == "hello\n"
    assert result.logs is not None
    assert (result.logs / "t-read-1-0.log").read_text() == "hello\n"


def test_a_default_workspace_is_a_new_directory_kept_after_the_run() -> None:
    result = local([python_stage("w", "open(os.environ['KUBEDAG_WORKSPACE'] + '/f', 'w')")])
    assert result.status.phase == RunPhase.SUCCEEDED
    assert (result.workspace / "f").is_file()
    assert result.logs is not None and result.logs.parent == result.workspace.parent
    assert not any(p.name != "f" for p in result.workspace.iterdir())


def test_what_a_stage_leaves_running_ends_with_it(tmp_path: Path) -> None:
    # A container's background processes end with its main process; so do a local stage's.
    result = local([{"name": "bg", "image": "busybox", "command": [
        "sh", "-c", "sleep 60 & echo $! > $KUBEDAG_WORKSPACE/bg-1.pid"]}], workspace=tmp_path)
    assert result.status.phase == RunPhase.SUCCEEDED
    (pid,) = _pids(tmp_path, "bg")
    give_up = time.monotonic() + 1
    while not _gone(pid) and time.monotonic() < give_up:
        time.sleep(0.01)  # SIGKILL was sent; it lands at the process's next scheduling
    assert _gone(pid)


def test_an_error_in_the_caller_leaves_no_process_behind(tmp_path: Path) -> None:
    def fail_once_running(status: PipelineRunStatus) -> None:
        if (status.stages or {}).get("long") and _pids(tmp_path, "long"):
            raise RuntimeError("the caller gave up")

    long = python_stage("long", "open(os.path.join(os.environ['KUBEDAG_WORKSPACE'],"
                        " f'long-{os.getpid()}.pid'), 'w').write(str(os.getpid()))\n"
                        "import time; time.sleep(60)")
    marker = reporting("marker", {}, dependsOn=["long"])
    with pytest.raises(RuntimeError, match="gave up"):
        # "tick" ends while "long" runs: a status change, so on_status is called then.
        local([long, marker, python_stage("tick", "import time; time.sleep(0.3)")],
              workspace=tmp_path, on_status=fail_once_running)
    assert _pids(tmp_path, "long")
    assert all(_gone(pid) for pid in _pids(tmp_path, "long"))
