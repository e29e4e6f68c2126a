"""The operator's Job and the worker agree: the env the operator writes is the env the worker
reads, and the worker's termination message is what the operator parses.

The worker runs as a real process with exactly the env of the Job's container (downward-API
fields resolved as the kubelet would), so a renamed variable on either side fails here.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from kubedag import contract
from kubedag.api import PipelineSpec, RetryPolicy
from kubedag.core.jobspec import JobSettings, RunIdentity, build_job
from kubedag.core.observe import parse_termination_message
from tests.unit.worker.support import REPO, pod_env, worker_command

RUN = RunIdentity(name="run-1", namespace="team-a", uid="uid-1", pipeline="docs")
ITEMS = ["a.pdf", "b.pdf", "c.pdf", "d.pdf", "e.pdf"]


def _job(processor: str) -> dict[str, Any]:
    pipeline = PipelineSpec.model_validate({
        "params": [{"name": "lang", "type": "string", "default": "en"},
                   {"name": "files", "type": "array"}],
        "stages": [
            {"name": "split", "image": "busybox"},
            {"name": "process", "processor": processor, "dependsOn": ["split"],
             "fanOut": {"itemsFrom": "$(params.files)", "batchSize": 2}},
        ],
    })
    return build_job(run=RUN, pipeline=pipeline, stage=pipeline.stages[1], attempt=2,
                     params={"lang": "de", "files": ITEMS},
                     outputs={"split": {"parts": 3}}, settings=JobSettings())


def _run_container(job: dict[str, Any], tmp: Path, index: int) -> tuple[int, bytes]:
    """Run the Job's container command the way the kubelet would, for completion `index`."""
    container = job["spec"]["template"]["spec"]["containers"][0]
    fields = {"metadata.namespace": RUN.namespace, "metadata.name": f"process-{index}"}
    env = pod_env(tmp)
    for var in container["env"]:
        env[var["name"]] = (var["value"] if "value" in var
                            else fields[var["valueFrom"]["fieldRef"]["fieldPath"]])
    env[contract.ENV_COMPLETION_INDEX] = str(index)  # set by Kubernetes for Indexed Jobs
    env.pop("KUBECONFIG", None)
    command = container["command"]
    assert command[0] == "kubedag-worker"
    done = subprocess.run([*worker_command(), *command[1:], *container.get("args", [])],
                          env=env, cwd=REPO, capture_output=True, timeout=60, check=False)
    path = Path(env[contract.ENV_TERMINATION_MESSAGE_PATH])
    return done.returncode, path.read_bytes() if path.exists() else b""


def test_worker_reads_what_the_operator_writes(tmp_path: Path) -> None:
    job = _job("tests.unit.worker.sample_processors:echo")
    code, raw = _run_container(job, tmp_path, index=1)
    assert code == contract.EXIT_OK
    outputs, usage, error = parse_termination_message(raw.decode())
    assert error is None and outputs is not None and usage is not None
    assert outputs["items"] == ITEMS[2:4]  # batch 1 of size 2
    assert outputs["params"] == {"lang": "de", "files": ITEMS}
    assert outputs["inputs"] == {"split": {"parts": 3}}
    assert (outputs["run"], outputs["stage"], outputs["attempt"]) == ("run-1", "process", 2)
    assert set(usage) == {"cpuSeconds", "peakRssBytes"}
    assert len(raw) <= contract.TERMINATION_MESSAGE_LIMIT


def test_worker_failures_meet_the_operators_default_retry_policy(tmp_path: Path) -> None:
    policy = RetryPolicy(limit=3)
    for processor, retryable in (("retryable", True), ("timeout", True),
                                 ("permanent", False), ("value_error", False)):
        code, raw = _run_container(_job(f"tests.unit.worker.sample_processors:{processor}"),
                                   tmp_path, index=0)
        assert code != 0
        assert policy.is_retryable(code) is retryable, (processor, code)
        assert json.loads(raw)["error"], processor
