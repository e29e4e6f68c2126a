"""A real notebook on a real kernel (nbclient + ipykernel): it writes a module of decorated
stages, checks and runs the pipeline locally with progress, submits it to the test bed through
the kubeconfig, waits, and reads the outputs back. The local run's outputs are computed by the
stage functions; kwok's pods run no code, so the cluster run reports them through the test
bed's annotations, and the test checks that both runs agree."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

from kubedag.testbed import ANNOTATION_DURATION, ANNOTATION_MESSAGE
from tests.integration.operator_process import OperatorProcess
from tests.integration.support import Cluster

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "notebooks" / "quickstart.ipynb"
TEXT = "the cat sat on the mat and the dog sat on the log"


def _expected_outputs() -> dict[str, dict[str, Any]]:
    """What the stages compute for TEXT (top 3), worked out here independently."""
    words = TEXT.split()
    return {
        "split": {"words": words},
        "count": {"distinct": 8, "total": 13, "top": ["the", "sat", "on"]},
        "report": {"summary": "13 words, 8 distinct; top: the, sat, on"},
    }


def _kwok_pod(outputs: dict[str, Any]) -> dict[str, str]:
    return {ANNOTATION_DURATION: "1s", ANNOTATION_MESSAGE: json.dumps({"outputs": outputs})}


def _parameters(cluster: Cluster, namespace: str) -> str:
    placement = cluster.pod_placement()
    test_bed = {
        "pod_annotations": {s: _kwok_pod(o) for s, o in _expected_outputs().items()},
        "node_selector": placement["nodeSelector"],
        "tolerations": placement["tolerations"],
    }
    return (f"kubeconfig = {str(cluster.kubeconfig)!r}\nnamespace = {namespace!r}\n"
            f"test_bed = {test_bed!r}\n")


def test_the_quickstart_notebook_runs_locally_and_on_the_cluster(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess, tmp_path: Path
) -> None:
    shutil.copy(NOTEBOOK, tmp_path / NOTEBOOK.name)
    notebook = nbformat.read(tmp_path / NOTEBOOK.name, as_version=4)
    [parameters] = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    # As papermill does: the injected values follow the notebook's defaults.
    index = notebook.cells.index(parameters)
    notebook.cells.insert(index + 1, nbformat.v4.new_code_cell(_parameters(cluster, namespace)))

    NotebookClient(notebook, timeout=240, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()

    (tmp_path / "executed.ipynb").write_text(nbformat.writes(notebook))  # to look at on failure
    texts = ["".join(o.get("text", "") for o in cell.get("outputs", []))
             for cell in notebook.cells if cell.cell_type == "code"]
    summary = json.loads(texts[-1].strip().splitlines()[-1])
    # The local run showed its progress as widget bars: one for the run, one per stage.
    [local_cell] = [c for c in notebook.cells if "run_local(" in c.source]
    bars = [o["data"]["text/plain"] for o in local_cell.outputs
            if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert [b.split(":")[0].strip() for b in bars] == [
        "wordcount-local", "split", "count", "report"], bars
    expected = _expected_outputs()
    # Locally the real functions ran, in worker processes, under the same decide().
    assert summary["local"]["phase"] == "Succeeded"
    assert summary["local"]["count"] == expected["count"]
    assert summary["local"]["report"] == expected["report"]
    cluster_run = summary["cluster"]
    assert (cluster_run["phase"], cluster_run["exit_code"]) == ("Succeeded", 0)
    assert cluster_run["stages"] == dict.fromkeys(("split", "count", "report"), "Succeeded")
    assert cluster_run["report"] == expected["report"]
    # The run is really on the cluster, in the namespace the notebook was given.
    run = cluster.custom.get_namespaced_custom_object(
        "kubedag.io", "v1alpha1", namespace, "pipelineruns", cluster_run["name"])
    assert run["status"]["phase"] == "Succeeded"
    assert run["status"]["stages"]["count"]["outputs"] == expected["count"]
    # The pipeline it ran is the notebook's module, written as YAML in the notebook too.
    assert "processor: wordcount:count" in "\n".join(texts)
