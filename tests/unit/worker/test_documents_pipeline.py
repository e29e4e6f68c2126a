"""The five document stages run one after another through the real ``kubedag-worker`` CLI on a
copy of examples/documents, each stage a separate process sharing only the workspace."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

from kubedag import contract
from tests.unit.worker.support import REPO, run_worker

STAGES = ("validate", "extract", "normalize", "chunk", "aggregate")
PROCESSORS = "kubedag.worker.processors.documents"
CHUNK_SIZE, OVERLAP = 40, 10

# What each sample reads as after extraction and normalization, worked out by hand.
EXPECTED_TEXT = {
    "guide.md": "Install guide\n\nRun make demo to start a local cluster.\n\none\ntwo\n\n"
                "See the docs for kubectl usage.",
    "notes.txt": "Meeting notes\nAttendees: Ana, Bo and Chen.\n\n"
                 "Decisions: ship the worker first; review later.",
    "page.html": "Status page\n\nAll systems operational.\n\nAPI up\n\nWorkers up",
    "report.pdf": "Quarterly report. Revenue grew in every region.",
}


def _chunks(length: int) -> int:
    return max(1, math.ceil((length - OVERLAP) / (CHUNK_SIZE - OVERLAP)))


def test_document_pipeline_summary(tmp_path: Path) -> None:
    shutil.copytree(REPO / "examples" / "documents", tmp_path / "input")
    (tmp_path / "input" / "fake.pdf").write_text("not a pdf at all")
    (tmp_path / "input" / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (tmp_path / "input" / "empty.txt").write_bytes(b"")
    params = json.dumps({"inputDir": "input", "chunkSize": CHUNK_SIZE, "chunkOverlap": OVERLAP})

    outputs = {}
    for stage in STAGES:
        result = run_worker(
            tmp_path, f"{PROCESSORS}:{stage}", KUBEDAG_PARAMS=params, KUBEDAG_STAGE=stage,
            KUBEDAG_INPUTS=json.dumps(outputs),
        )
        assert result.code == contract.EXIT_OK, f"{stage}: {result.stderr}"
        outputs[stage] = result.message["outputs"]

    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert [d["path"] for d in manifest["accepted"]] == sorted(EXPECTED_TEXT)
    assert {r["path"]: r["reason"] for r in manifest["rejected"]} == {
        "empty.txt": "empty file",
        "fake.pdf": "has a .pdf extension but no PDF signature",
        "photo.png": "unsupported type .png",
    }
    for name, text in EXPECTED_TEXT.items():
        normalized = json.loads((tmp_path / "normalized" / f"{name}.json").read_text())
        assert normalized["text"] == text, name

    assert outputs["validate"]["accepted"] == 4 and outputs["validate"]["rejected"] == 3
    assert outputs["extract"] == {"documents": 4, "failed": 0, "pages": 5, "scannedPages": 1}
    expected = {
        "documents": 4,
        "words": 14 + 18 + 9 + 7,
        "chunks": sum(_chunks(len(t)) for t in EXPECTED_TEXT.values()),
        "pages": 5,  # one each, and the PDF's two
        "scannedPages": 1,  # the PDF's blank second page
        "types": {"html": 1, "md": 1, "pdf": 1, "txt": 1},
        "rejected": 3,
        "failed": 0,
    }
    assert json.loads((tmp_path / "summary.json").read_text()) == expected
    assert outputs["aggregate"] == {**expected, "summary": "summary.json"}
    assert outputs["chunk"]["chunks"] == expected["chunks"]


def test_extract_fans_out_over_document_paths(tmp_path: Path) -> None:
    shutil.copytree(REPO / "examples" / "documents", tmp_path / "input")
    assert run_worker(tmp_path, f"{PROCESSORS}:validate").code == contract.EXIT_OK
    items = json.dumps(sorted(EXPECTED_TEXT))
    for index in ("0", "1"):
        result = run_worker(
            tmp_path, f"{PROCESSORS}:extract", KUBEDAG_FANOUT_ITEMS=items,
            KUBEDAG_FANOUT_BATCH_SIZE="3", JOB_COMPLETION_INDEX=index,
        )
        assert result.code == contract.EXIT_OK, result.stderr
        assert result.message["outputs"]["documents"] == (3 if index == "0" else 1)
    assert sorted(p.name for p in (tmp_path / "extracted").iterdir()) == [
        f"{name}.json" for name in sorted(EXPECTED_TEXT)
    ]


def test_missing_input_dir_is_permanent(tmp_path: Path) -> None:
    result = run_worker(tmp_path, f"{PROCESSORS}:validate")
    assert result.code == contract.EXIT_PERMANENT
    assert "does not exist" in result.message["error"]


def test_a_corrupt_pdf_is_recorded_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "input").mkdir()
    (tmp_path / "input" / "broken.pdf").write_bytes(b"%PDF-1.7\ngarbage")
    (tmp_path / "input" / "ok.txt").write_text("two words")
    for stage in STAGES:
        result = run_worker(tmp_path, f"{PROCESSORS}:{stage}")
        assert result.code == contract.EXIT_OK, f"{stage}: {result.stderr}"
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["documents"], summary["failed"], summary["words"]) == (1, 1, 2)
