"""A processor marked with `contract.PROCESSOR_INPUTS_ATTRIBUTE` (as `Pipeline.task` marks it)
gets its upstream stages' outputs as keyword arguments, in a real ``kubedag-worker`` process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kubedag import contract
from kubedag.worker import Context
from tests.unit.worker.support import run_worker

HERE = "tests.unit.worker.test_processor_inputs"


def merge(context: Context, extract_text: dict[str, Any], clean: dict[str, Any]) -> dict[str, Any]:
    return {"stage": context.stage, "extract_text": extract_text, "clean": clean}


# The SDK maps parameters to stage names: `extract_text` reads the stage `extract-text`.
setattr(merge, contract.PROCESSOR_INPUTS_ATTRIBUTE,
        {"extract_text": "extract-text", "clean": "clean"})


def plain(context: Context) -> dict[str, Any]:
    return {"inputs": dict(context.inputs)}


def test_marked_processor_gets_upstream_outputs_by_parameter_name(tmp_path: Path) -> None:
    inputs = {"extract-text": {"pages": 3}, "unrelated": {"x": 1}}
    result = run_worker(tmp_path, f"{HERE}:merge", KUBEDAG_STAGE="merge",
                        KUBEDAG_INPUTS=json.dumps(inputs))
    assert result.code == contract.EXIT_OK, result.stderr
    # An upstream stage that reported nothing (or was skipped) arrives as an empty dict.
    assert result.message["outputs"] == {"stage": "merge", "extract_text": {"pages": 3},
                                         "clean": {}}


def test_unmarked_processor_is_called_with_the_context_only(tmp_path: Path) -> None:
    result = run_worker(tmp_path, f"{HERE}:plain", KUBEDAG_INPUTS=json.dumps({"a": {"n": 1}}))
    assert result.code == contract.EXIT_OK, result.stderr
    assert result.message["outputs"] == {"inputs": {"a": {"n": 1}}}
