"""The demo's document pipeline (examples/demo/document-run-real.yaml), run locally: the real
document processors in real `kubedag-worker` processes, the extract fan-out as one process per
index, files handed from stage to stage through the local workspace."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import pytest
import yaml

from kubedag.api import PipelineRun, RunPhase, StagePhase
from kubedag.local import run_local

REPO = Path(__file__).resolve().parents[3]
DEMO = REPO / "examples" / "demo" / "document-run-real.yaml"
DOCUMENTS = REPO / "examples" / "documents"


def test_the_demo_document_pipeline_runs_locally(tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    run = PipelineRun.model_validate(yaml.safe_load(DEMO.read_text()))
    # The demo fills its workspace claim with the documents under input/ first; so do we.
    shutil.copytree(DOCUMENTS, tmp_path / "input")
    caplog.set_level(logging.WARNING, logger="kubedag.local")

    started = time.monotonic()
    result = run_local(run, workspace=tmp_path)
    elapsed = time.monotonic() - started

    stages = result.status.stages or {}
    assert result.status.phase == RunPhase.SUCCEEDED, {n: cp.message for n, cp in stages.items()}
    assert all(cp.phase == StagePhase.SUCCEEDED for cp in stages.values())
    assert (stages["validate"].outputs or {})["accepted"] == 4
    extract = stages["extract"]
    assert extract.fan_out is not None and extract.fan_out.total == 2  # 4 files, 2 per pod
    assert [r["documents"] for r in (extract.outputs or {})["results"]] == [2, 2]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert stages["aggregate"].outputs == {**summary, "summary": "summary.json"}
    assert (summary["documents"], summary["pages"], summary["scannedPages"],
            summary["failed"]) == (4, 5, 1, 0)
    assert summary["types"] == {"html": 1, "md": 1, "pdf": 1, "txt": 1}
    written = sum(len(json.loads(p.read_text())["chunks"])
                  for p in (tmp_path / "chunks").glob("*.json"))
    assert summary["chunks"] == written == (stages["chunk"].outputs or {})["chunks"]

    # Said at the start: what of the cluster settings a local run does not honour.
    ignored = "\n".join(result.ignored)
    for setting in ("resources of stages validate, extract, normalize, chunk, aggregate",
                    "defaults.image", "defaults.serviceAccountName", "defaults.nodeSelector",
                    "defaults.tolerations", f"the local directory {tmp_path.resolve()}"):
        assert setting in ignored
    assert all(line in caplog.text for line in result.ignored)
    print(f"document pipeline, locally: {elapsed:.2f} s")  # the closing note reports it
    assert elapsed < 30
