"""`kubedag run --local`: real local processes under the operator's decision core, with the
same exit codes as a cluster run (no API server involved)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubedag.cli.main import main
from kubedag.core.runview import EXIT_FAILED, EXIT_SUCCEEDED, EXIT_TIMED_OUT, EXIT_USAGE

REPO = Path(__file__).resolve().parents[3]


def pipeline_file(tmp_path: Path, *stages: dict[str, Any], **spec: Any) -> str:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({
        "apiVersion": "kubedag.io/v1alpha1", "kind": "Pipeline", "metadata": {"name": "p"},
        "spec": {"stages": list(stages), **spec}}))
    return str(path)


def shell(name: str, script: str, *deps: str) -> dict[str, Any]:
    stage: dict[str, Any] = {"name": name, "image": "busybox", "command": ["sh", "-c", script]}
    if deps:
        stage["dependsOn"] = list(deps)
    return stage


def test_an_example_runs_locally_with_one_line_per_transition(
    capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--local", str(REPO / "examples" / "hello-run.yaml")]) == EXIT_SUCCEEDED
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert any("hello Succeeded" in line for line in lines), lines
    assert "run hello Succeeded" in lines[-1]
    # What the local run ignores is said at its start.
    assert "resources of stage there" in captured.err


def test_params_failures_and_json_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = pipeline_file(tmp_path, shell("a", "test $(params.n) -eq 3"),
                         shell("b", "exit 1", "a"),
                         params=[{"name": "n", "type": "int", "default": 1}])
    assert main(["run", "--local", file, "-p", "n=3", "-o", "json"]) == EXIT_FAILED
    result = json.loads(capsys.readouterr().out)
    assert result["stages"]["a"]["phase"] == "Succeeded"
    assert result["stages"]["b"]["phase"] == "Failed" and result["exitCode"] == EXIT_FAILED


def test_timeout_cancels_the_local_run_with_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = pipeline_file(tmp_path, shell("slow", "sleep 30"))
    started = time.monotonic()
    assert main(["run", "--local", file, "--timeout", "1"]) == EXIT_TIMED_OUT
    assert time.monotonic() - started < 15
    assert "timed out" in capsys.readouterr().err


def test_run_without_local_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(REPO / "examples" / "hello-run.yaml")]) == EXIT_USAGE
    assert "needs --local" in capsys.readouterr().err
    assert main(["run", "--local", str(REPO / "examples" / "document-pipeline-run.yaml")]) \
        == EXIT_USAGE


def test_the_document_template_runs_locally_on_the_sample_documents(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = tmp_path / "input"
    inputs.mkdir()
    for document in (REPO / "examples" / "documents").iterdir():
        (inputs / document.name).write_bytes(document.read_bytes())
    code = main(["run", "--local", "template:document-processing", "--workspace",
                 str(tmp_path), "-o", "json"])
    result = json.loads(capsys.readouterr().out)
    assert code == EXIT_SUCCEEDED, result
    assert list(result["stages"]) == ["ingest", "parse", "normalize", "extract", "embed",
                                      "build-kg"]
    assert all(s["phase"] == "Succeeded" for s in result["stages"].values())
