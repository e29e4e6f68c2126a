"""`Pipeline.run_local`: the decorated example runs with real local worker processes, each
function receiving its upstream stages' outputs by parameter name."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from examples.sdk import etl

from kubedag.api import RunPhase, StagePhase
from kubedag.core.runview import EXIT_SUCCEEDED
from kubedag.sdk import PipelineDefinitionError

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def importable_examples(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker processes import `examples.sdk.etl` as a stage pod would: from their path."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [
        str(REPO), os.environ.get("PYTHONPATH")])))


def test_the_decorated_pipeline_runs_locally_with_outputs_passed_by_name(tmp_path: Path) -> None:
    result = etl.pipeline.run_local({"rows": [3, 1, 2], "scale": 2}, workspace=tmp_path,
                                    progress=False)
    assert result.phase is RunPhase.SUCCEEDED and result.exit_code == EXIT_SUCCEEDED, result
    assert list(result.stages) == ["extract", "transform", "load-totals"]
    assert all(s.phase is StagePhase.SUCCEEDED for s in result.stages.values())
    assert result.outputs("extract") == {"rows": [3, 1, 2], "count": 3}
    assert result.outputs("transform") == {"scaled": [6, 2, 4]}
    assert result.outputs("load-totals") == {"total": 12, "rows": 3}


def test_bad_params_fail_before_any_process_starts(tmp_path: Path) -> None:
    with pytest.raises(PipelineDefinitionError, match=r"spec\.params\.rows: expected array"):
        etl.pipeline.run_local({"rows": "1,2"}, workspace=tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []
