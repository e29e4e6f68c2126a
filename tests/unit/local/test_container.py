"""A stage's Job container as a host command: pure, from the manifest build_job makes."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from kubedag.api import PipelineSpec
from kubedag.core.jobspec import JobSettings, RunIdentity, build_job
from kubedag.local.container import CANNOT_CONFIGURE, host_environment, local_command

WORKSPACE = Path("/home/me/ws")
RUN = RunIdentity(name="r", namespace="team", uid="u", pipeline="p")


def _command(stage: dict[str, Any], host: dict[str, str] | None = None,
             defaults: dict[str, Any] | None = None) -> Any:
    pipeline = PipelineSpec.model_validate({"stages": [stage], "defaults": defaults})
    job = build_job(run=RUN, pipeline=pipeline, stage=pipeline.stages[0], attempt=1, params={},
                    outputs={}, settings=JobSettings(workspace_path=str(WORKSPACE)))
    return local_command(job, namespace="team", workspace=WORKSPACE,
                         worker_command=["py", "-m", "kubedag.worker"], host_env=host or {})


def test_a_processor_stage_runs_the_given_worker_command_with_the_jobs_arguments() -> None:
    command = _command({"name": "s", "processor": "m:f", "args": ["--x", "1"]})
    assert command.argv == ("py", "-m", "kubedag.worker", "run")
    assert command.env["KUBEDAG_PROCESSOR"] == "m:f"
    assert command.env["KUBEDAG_ARGS"] == '["--x", "1"]'  # the processor's context.args
    assert command.env["KUBEDAG_WORKSPACE"] == str(WORKSPACE)
    assert "KUBEDAG_NAMESPACE" not in command.env  # as in its pod: no account, no identity
    assert command.cannot_start is None


def test_a_stage_with_an_account_knows_its_namespace_but_has_no_pod_to_patch() -> None:
    command = _command({"name": "s", "processor": "m:f"},
                       defaults={"serviceAccountName": "worker"})
    assert command.env["KUBEDAG_NAMESPACE"] == "team"
    assert "KUBEDAG_POD_NAME" not in command.env  # progress is logged, no pod is patched


def test_only_the_container_workspace_path_is_rewritten_in_a_command() -> None:
    command = _command({"name": "s", "image": "i", "command": [
        "sh", "-c", "cp /workspace/a /workspace /var/workspace/b /workspaces/c"]})
    assert command.argv[-1] == (f"cp {WORKSPACE}/a {WORKSPACE} /var/workspace/b /workspaces/c")


def test_a_required_secret_missing_from_the_host_stops_the_container() -> None:
    stage = {"name": "s", "processor": "m:f", "env": [
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}
    assert _command(stage).cannot_start == (
        CANNOT_CONFIGURE, "env TOKEN comes from Secret s key k, which a local run cannot "
        "read: set TOKEN in the environment of the local run")
    given = _command(stage, host={"TOKEN": "t"})
    assert (given.cannot_start, given.env["TOKEN"]) == (None, "t")


def test_the_hosts_own_contract_variables_do_not_leak_into_a_stage() -> None:
    host = host_environment({"PATH": "/bin", "KUBEDAG_STAGE": "other",
                             "JOB_COMPLETION_INDEX": "3"})
    assert host == {"PATH": "/bin"}


def test_a_stage_imports_what_the_caller_imports(tmp_path: Path) -> None:
    """A processor module next to a notebook is importable by its local stages too."""
    site = next(p for p in sys.path if p.endswith("site-packages"))
    host = host_environment({"PYTHONPATH": "/opt/extra"}, ["", str(tmp_path), site])
    assert host["PYTHONPATH"].split(os.pathsep) == [str(Path.cwd()), str(tmp_path), "/opt/extra"]
