"""Pipelines of small command stages for local-run tests: `python -c` one-liners that report
outputs the way any container does, by writing the JSON termination message."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubedag.api import PipelineRun, PipelineRunStatus, StagePhase
from kubedag.local import LocalRun, run_local

REPORT = ("import json, os\n"
          "def report(**outputs):\n"
          "    with open(os.environ['KUBEDAG_TERMINATION_MESSAGE_PATH'], 'w') as f:\n"
          "        json.dump({'outputs': outputs}, f)\n")


def python_stage(name: str, code: str, **fields: Any) -> dict[str, Any]:
    """A command stage running ``code`` with `report(**outputs)` defined."""
    return {"name": name, "image": "python:3.12", "command": [sys.executable, "-c", REPORT + code],
            **fields}


def reporting(name: str, outputs: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return python_stage(name, f"report(**{outputs!r})", **fields)


def local(stages: list[dict[str, Any]], *, values: dict[str, Any] | None = None,
          spec: dict[str, Any] | None = None, workspace: Path | None = None,
          on_status: Callable[[PipelineRunStatus], None] | None = None,
          cancel: threading.Event | None = None, **pipeline: Any) -> LocalRun:
    """Run the stages (``pipeline``: more PipelineSpec fields, ``values``: the run's params)."""
    run = PipelineRun.model_validate({
        "metadata": {"name": "t"},
        "spec": {"params": values or {}, **(spec or {}),
                 "pipelineSpec": {"stages": stages, **pipeline}}})
    return run_local(run, workspace=workspace, on_status=on_status, cancel=cancel)


def phases(result: LocalRun) -> dict[str, StagePhase]:
    return {name: cp.phase for name, cp in (result.status.stages or {}).items()}
