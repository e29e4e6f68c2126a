"""Running a pipeline on this machine: `kubedag.local` drives the operator's decision core with
local worker processes; the result is the same view a cluster run gets (`RunResult`), and the
progress is shown by the same displays `RunHandle.watch` uses."""

from __future__ import annotations

from pathlib import Path

from kubedag import api
from kubedag.client.display import Display, choose_display
from kubedag.core.runview import RunResult
from kubedag.local import run_local


def run(
    run: api.PipelineRun, *, workspace: Path | None = None, progress: bool | None = None
) -> RunResult:
    """Run to the end. `progress`: None shows it as `watch` would (a live table in a terminal,
    bars in Jupyter, lines otherwise), True forces the live table, False shows nothing."""
    name = str(run.metadata.get("name") or "local")
    spec = run.spec.pipeline_spec
    display: Display | None = None if progress is False else choose_display(progress)

    def show(status: api.PipelineRunStatus) -> None:
        if display is not None:
            display.update(RunResult.from_status(name, None, status, spec))

    try:
        finished = run_local(run, workspace=workspace, on_status=show)
    finally:
        if display is not None:
            display.close()
    return RunResult.from_status(name, None, finished.status, spec)
