"""The command's offline paths, in process: exit codes, one-line errors, option placement."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from kubedag.cli.loading import LoadError, load
from kubedag.cli.main import hoist_global_options, main
from kubedag.core.runview import EXIT_USAGE

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples"


def test_global_options_after_the_command_are_moved_in_front() -> None:
    assert hoist_global_options(["get", "r", "-n", "ns", "--kubeconfig=k", "-o", "json"]) == [
        "-n", "ns", "--kubeconfig=k", "get", "r", "-o", "json"]
    assert hoist_global_options(["logs", "r", "--", "-n", "x"]) == [
        "logs", "r", "--", "-n", "x"]


def test_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "0 succeeded, 1 failed, 2 cancelled, 3 timed out" in out
    assert "4 usage or client error" in out


@pytest.mark.parametrize("argv", [
    ["bogus"], ["get"], ["get", "r", "--bogus"], ["graph", "x.yaml", "--format", "png"],
    ["submit", "-f", "nope.yaml"], ["lint", str(EXAMPLES / "invalid" / "self-dependency.yaml")],
])
def test_usage_errors_exit_4_without_a_traceback(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == EXIT_USAGE
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err


def test_lint_reports_every_problem_with_its_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump({
        "apiVersion": "kubedag.io/v1alpha1", "kind": "Pipeline", "metadata": {"name": "p"},
        "spec": {"stages": [
            {"name": "a", "image": "busybox", "dependsOn": ["c"]},
            {"name": "c", "image": "busybox", "dependsOn": ["a"], "when": "params.x >"},
        ]}}))
    assert main(["lint", str(broken), "-o", "json"]) == EXIT_USAGE
    report = json.loads(capsys.readouterr().out)
    assert report["valid"] is False
    assert any("dependency cycle" in e for e in report["errors"]), report
    assert any(e.startswith("spec.stages[1].when") for e in report["errors"]), report


def test_lint_accepts_every_example(capsys: pytest.CaptureFixture[str]) -> None:
    for path in sorted(EXAMPLES.glob("*.yaml")):
        assert main(["lint", str(path)]) == 0, capsys.readouterr()


def test_every_invalid_example_fails_to_load() -> None:
    for path in sorted((EXAMPLES / "invalid").glob("*.yaml")):
        with pytest.raises(LoadError):
            load(str(path))


def test_a_file_with_a_pipeline_and_its_run(tmp_path: Path) -> None:
    path = tmp_path / "both.yaml"
    path.write_text(yaml.safe_dump_all([
        {"apiVersion": "kubedag.io/v1alpha1", "kind": "Pipeline", "metadata": {"name": "p"},
         "spec": {"stages": [{"name": "a", "image": "busybox"}]}},
        {"apiVersion": "kubedag.io/v1alpha1", "kind": "PipelineRun",
         "metadata": {"name": "r"}, "spec": {"pipelineRef": {"name": "p"}}},
    ]))
    loaded = load(str(path))
    assert loaded.run is not None and loaded.spec is not None
    assert [s.name for s in loaded.spec.stages] == ["a"]
    assert loaded.name == "p"


def test_documents_of_other_kinds_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text("apiVersion: kubedag.io/v1alpha1\nkind: Pipelin\nmetadata: {name: p}\n"
                    "spec: {stages: []}\n")
    with pytest.raises(LoadError, match="kind: expected Pipeline or PipelineRun, got 'Pipelin'"):
        load(str(path))


def test_python_references_load_through_the_sdk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "mypipes.py").write_text(
        "from kubedag.sdk import Pipeline\n"
        "etl = Pipeline('etl')\n"
        "etl.add_step('extract', image='busybox', command=['true'])\n"
        "etl.add_step('load', image='busybox', command=['true'], depends_on=['extract'])\n"
        "broken = Pipeline('broken')\n"
        "broken.add_step('a', image='busybox', depends_on=['b'])\n"
        "broken.add_step('b', image='busybox', depends_on=['a'])\n")
    monkeypatch.chdir(tmp_path)
    loaded = load("mypipes:etl")
    assert loaded.name == "etl" and loaded.spec is not None
    assert [s.name for s in loaded.spec.stages] == ["extract", "load"]
    assert main(["lint", "mypipes:broken"]) == EXIT_USAGE
    assert "dependency cycle" in capsys.readouterr().out
    assert main(["lint", "mypipes:nothing"]) == EXIT_USAGE
    assert "has no 'nothing'" in capsys.readouterr().out


def test_graph_of_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", str(EXAMPLES / "document-pipeline.yaml")]) == 0
    assert '"validate" -> "extract"' in capsys.readouterr().out


def test_templates_ls_and_show(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["templates", "ls", "-o", "json"]) == 0
    listed = {t["name"]: t for t in json.loads(capsys.readouterr().out)}
    assert {"document-processing", "rag", "knowledge-graph"} <= set(listed)
    assert listed["rag"]["stages"] == ["ingest", "chunk", "embed", "store"]
    assert main(["templates", "ls", "--category", "retrieval"]) == 0
    out = capsys.readouterr().out
    assert "rag" in out and "knowledge-graph" not in out
    assert main(["templates", "show", "rag"]) == 0
    out = capsys.readouterr().out
    assert "Stage:       embed (kubedag.worker.processors.rag:embed)" in out
    assert "kind: Pipeline" in out
    assert main(["templates", "show", "nope"]) == EXIT_USAGE
    assert "no template 'nope'" in capsys.readouterr().err


def test_a_template_manifest_lints_and_templates_are_references(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["templates", "show", "knowledge-graph", "-o", "yaml"]) == 0
    manifest = tmp_path / "kg.yaml"
    manifest.write_text(capsys.readouterr().out)
    assert main(["lint", str(manifest)]) == 0
    assert main(["lint", "template:knowledge-graph"]) == 0
    assert "valid (6 stages)" in capsys.readouterr().out
    assert main(["graph", "template:rag", "--format", "mermaid"]) == 0
    assert "s2 --> s3" in capsys.readouterr().out
    assert main(["lint", "template:nope"]) == EXIT_USAGE


def test_an_unexpected_error_is_one_line_unless_debugging(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("kubedag.cli.main.list_templates", broken)
    assert main(["templates", "ls"]) == EXIT_USAGE
    assert capsys.readouterr().err.strip() == (
        "error: unexpected RuntimeError: boom (set KUBEDAG_DEBUG=1 for the traceback)")
    monkeypatch.setenv("KUBEDAG_DEBUG", "1")
    with pytest.raises(RuntimeError, match="boom"):
        main(["templates", "ls"])
