"""Running the template processors in-process, stage after stage, on a temporary workspace
holding a copy of the templates' sample corpus (examples/templates/corpus)."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from kubedag.worker.context import Context
from kubedag.worker.termination import outputs_message
from tests.unit.worker.support import REPO

CORPUS = REPO / "examples" / "templates" / "corpus"
Processor = Callable[[Context], dict[str, Any]]


def corpus_workspace(tmp_path: Path) -> Path:
    """A workspace whose ``input/`` is a copy of the sample corpus."""
    shutil.copytree(CORPUS, tmp_path / "input")
    return tmp_path


def stage_context(
    workspace: Path, params: Mapping[str, Any] | None = None, items: Sequence[Any] = (),
    stage: str = "stage",
) -> Context:
    return Context(params=dict(params or {}), inputs={}, items=tuple(items), workspace=workspace,
                   run="test-run", stage=stage, attempt=1, logger=logging.getLogger(stage),
                   _progress=lambda fraction, message: None)


def run_stages(
    workspace: Path, stages: Sequence[tuple[str, Processor]],
    params: Mapping[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """Each stage's outputs, checked to fit the termination message as in a pod."""
    outputs = {}
    for name, processor in stages:
        result = processor(stage_context(workspace, params, stage=name))
        outputs_message(result, {})  # raises when the outputs could not leave the pod
        outputs[name] = result
    return outputs
