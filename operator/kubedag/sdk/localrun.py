"""Running a pipeline on this machine: `kubedag.local` drives the same decision core with
local worker processes; this adapts its result to the view a cluster run gets."""

from __future__ import annotations

from pathlib import Path

from kubedag import api


def run(
    run: api.PipelineRun, *, workspace: Path | None = None, progress: bool | None = None
) -> object:
    raise NotImplementedError("kubedag.local is not on this branch yet")
