"""`make bench-argo`'s pure parts: the Argo Workflows built from the bench's DAGs, the table, and
the kwok Stages that let Argo's pods and the pods-directly floor's finish."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from bench import dags
from bench.argo import (
    COLUMNS,
    DAG_TEMPLATE,
    KWOK_NOTE,
    STAGE_TEMPLATE,
    argo_message,
    request_summary,
    table,
    workflow_manifest,
)
from bench.floor import POD_OWNER_KIND, job_manifest, pod_manifest

from kubedag.testbed.stages import UPSTREAM_STAGES, stages_config

PLACEMENT = {"nodeSelector": {"type": "kwok"},
             "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists",
                              "effect": "NoSchedule"}]}


def _tasks(workflow: dict[str, Any]) -> dict[str, list[str]]:
    [dag_template] = [t for t in workflow["spec"]["templates"] if t["name"] == DAG_TEMPLATE]
    return {t["name"]: t.get("dependencies", []) for t in dag_template["dag"]["tasks"]}


@pytest.mark.parametrize("dag", [dags.chain(100), dags.lattice(30, 30), dags.fan_out(982, 16),
                                 dags.layered([1, 6, 6, 6, 1])],
                         ids=["chain", "lattice", "fanout", "layered"])
def test_each_stage_is_one_task_with_the_same_dependencies(dag: dags.Dag) -> None:
    workflow = workflow_manifest("run", dag, PLACEMENT, {"image": "busybox"})

    assert _tasks(workflow) == dag
    assert all(t["template"] == STAGE_TEMPLATE for t in
               workflow["spec"]["templates"][1]["dag"]["tasks"])


def test_the_workflow_carries_the_placement_and_a_runnable_container() -> None:
    workflow = workflow_manifest("chain-1", dags.chain(2), PLACEMENT, {"image": "busybox"})

    assert workflow["apiVersion"] == "argoproj.io/v1alpha1"
    assert workflow["kind"] == "Workflow"
    assert workflow["metadata"] == {"name": "chain-1"}
    spec = workflow["spec"]
    assert spec["entrypoint"] == DAG_TEMPLATE
    assert spec["nodeSelector"] == PLACEMENT["nodeSelector"]
    assert spec["tolerations"] == PLACEMENT["tolerations"]
    [stage] = [t for t in spec["templates"] if t["name"] == STAGE_TEMPLATE]
    # No command would send Argo's controller to the image registry for the entrypoint.
    assert stage["container"] == {"command": ["true"], "image": "busybox"}


def test_a_given_command_is_kept() -> None:
    workflow = workflow_manifest("r", dags.chain(1), PLACEMENT,
                                 {"image": "worker", "command": ["sh", "-c", "exit 0"]})

    assert workflow["spec"]["templates"][0]["container"]["command"] == ["sh", "-c", "exit 0"]


def test_a_first_stage_has_no_dependencies_field() -> None:
    tasks = workflow_manifest("r", dags.chain(2), PLACEMENT, {"image": "b"})[
        "spec"]["templates"][1]["dag"]["tasks"]

    assert "dependencies" not in tasks[0]
    assert tasks[1]["dependencies"] == ["s000"]


@pytest.mark.parametrize("name", ["l0-0", "a_b", "0abc", ""])
def test_names_argo_cannot_use_as_tasks_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="Argo task names"):
        workflow_manifest("r", {name: []}, PLACEMENT, {"image": "b"})


def test_the_layered_dag_names_are_argo_task_names() -> None:
    assert list(dags.layered([1, 2])) == ["l0c0", "l1c0", "l1c1"]


def _done(wall: float, **extra: Any) -> dict[str, Any]:
    return {"complete": True, "wall_seconds": wall, "requests_total": 1000,
            "requests_writes": 300, "cpu_seconds": 12.34, "peak_rss_mib": 95.6,
            "status_bytes": 2048, "message": "", **extra}


def test_the_table_has_a_column_per_system_and_a_row_per_measure() -> None:
    results = [{"title": "chain of 100", "systems": {
        "job_floor": _done(5.0, peak_rss_mib=None, status_bytes=None),
        "pods_floor": _done(2.5), "kubedag": _done(10.0),
        "argo_tuned": _done(75.0), "argo_default": _done(600.0)}}]

    lines = table(results, cap=600).splitlines()

    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == ["scenario", "measure", *(head for _, head in COLUMNS)]
    assert lines[1] == "|" + "---|" * 7
    wall = [c.strip() for c in lines[2].strip("|").split("|")]
    assert wall[0] == "**chain of 100**"
    assert wall[2:] == ["5.0 s (1.00x)", "2.5 s (0.50x)", "10.0 s (2.00x)", "600.0 s (120.00x)",
                        "75.0 s (15.00x)"]
    requests, cpu, rss, status = ([c.strip() for c in line.strip("|").split("|")]
                                  for line in lines[3:7])
    assert requests[2:] == ["1000 (300)"] * 5
    assert cpu[2:] == ["12.3 s"] * 5
    assert rss[2:] == ["—", "96 MiB", "96 MiB", "96 MiB", "96 MiB"]
    assert status[2:] == ["—", "2.0 KiB", "2.0 KiB", "2.0 KiB", "2.0 KiB"]
    assert all(cells[0] == "" for cells in (requests, cpu, rss, status))
    assert KWOK_NOTE in lines


def test_an_unfinished_system_shows_the_cap_and_argos_message_in_a_note() -> None:
    message = "1 of 1 Workflow(s) not final; e.g. chain: phase Running, progress 57/100"
    results = [{"title": "chain of 100", "systems": {
        "job_floor": _done(5.0), "kubedag": _done(9.0),
        "argo_default": {"complete": False, "wall_seconds": None, "requests_total": 50,
                         "requests_writes": 20, "cpu_seconds": 3.0, "peak_rss_mib": 80.0,
                         "status_bytes": 4096, "message": message}}}]

    text = table(results, cap=600)

    wall = [c.strip() for c in text.splitlines()[2].strip("|").split("|")]
    assert wall[2:] == ["5.0 s (1.00x)", "skipped", "9.0 s (1.80x)", "> 600 s ¹", "skipped"]
    assert f"¹ Argo default, chain of 100, not final after 600 s: {message}" in text


def test_a_run_that_ended_failed_shows_its_wall_and_argos_message() -> None:
    message = "1 of 1 Workflow(s) Failed or Error; e.g. f: phase Error, Argo says: too large"
    results = [{"title": "fan-out", "systems": {
        "job_floor": _done(40.0), "argo_tuned": _done(20.0, phases={"Error": 1},
                                                      message=message)}}]

    text = table(results, cap=600)

    wall = [c.strip() for c in text.splitlines()[2].strip("|").split("|")]
    assert wall[6] == "20.0 s (0.50x), not Succeeded ¹"
    assert f"¹ Argo tuned, fan-out, ended: {message}" in text
    assert sum(line.startswith("¹ ") for line in text.splitlines()) == 1


def test_without_a_floor_walls_have_no_ratio() -> None:
    results = [{"title": "t", "systems": {"kubedag": _done(9.0)}}]

    wall = [c.strip() for c in table(results, cap=60).splitlines()[2].strip("|").split("|")]

    assert wall[4] == "9.0 s"


def test_request_summary_counts_writes_apart() -> None:
    delta = Counter({("GET", "pods", "", ""): 5, ("WATCH", "pods", "", ""): 2,
                     ("POST", "pods", "", ""): 3, ("PUT", "workflows", "", ""): 4,
                     ("PATCH", "pods", "status", ""): 6})

    summary = request_summary(delta)

    assert summary["requests_total"] == 20
    assert summary["requests_writes"] == 13
    assert summary["requests_by_verb"] == {"GET": 5, "PATCH": 6, "POST": 3, "PUT": 4, "WATCH": 2}


def test_argo_message_quotes_argo() -> None:
    workflows = [
        {"metadata": {"name": "a"}, "status": {"phase": "Succeeded"}},
        {"metadata": {"name": "b"}, "status": {
            "phase": "Running", "progress": "57/101", "message": "child failed",
            "conditions": [{"type": "PodRunning", "status": "True"},
                           {"type": "SpecWarning", "message": "odd spec"}]}},
    ]

    said = argo_message(workflows)

    assert said == ("1 of 2 Workflow(s) not final; e.g. b: phase Running, progress 57/101, "
                    "Argo says: child failed; SpecWarning: odd spec")
    assert argo_message(workflows[:1]) == ""
    assert "phase none" in argo_message([{"metadata": {"name": "c"}}])
    failed = {"metadata": {"name": "d"}, "status": {"phase": "Error", "message": "too big"}}
    assert argo_message([workflows[0], failed]) == (
        "1 of 2 Workflow(s) Failed or Error; e.g. d: phase Error, progress —, Argo says: too big")


def test_the_pods_directly_floor_owns_its_pods_by_the_run_object() -> None:
    pod = pod_manifest("run", "s001", {"name": "run", "uid": "u-1"}, PLACEMENT)
    job = job_manifest("run", "s001", PLACEMENT)

    assert pod["kind"] == "Pod"
    assert pod["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": POD_OWNER_KIND, "name": "run", "uid": "u-1"}]
    # The same pod as the Job floor's, only without the Job.
    assert pod["spec"] == job["spec"]["template"]["spec"]
    assert pod["metadata"]["labels"] == job["spec"]["template"]["metadata"]["labels"]


def _upstream(tmp_path: Path) -> Path:
    for rel in UPSTREAM_STAGES:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(f"kind: Stage\nmetadata:\n  name: {Path(rel).stem}\n")
    return tmp_path


def _owner_kinds(config: str) -> dict[str, list[str]]:
    out = {}
    for doc in yaml.safe_load_all(config):
        for expression in (doc.get("spec") or {}).get("selector", {}).get("matchExpressions", []):
            if expression["key"] == ".metadata.ownerReferences.[].kind":
                out[doc["metadata"]["name"]] = expression["values"]
    return out


def test_by_default_only_job_owned_pods_finish(tmp_path: Path) -> None:
    kinds = _owner_kinds(stages_config(_upstream(tmp_path)))

    assert kinds == {"kubedag-pod-succeed": ["Job"], "kubedag-pod-fail": ["Job"]}


def test_the_bench_can_let_workflow_owned_pods_finish(tmp_path: Path) -> None:
    config = stages_config(_upstream(tmp_path), ("Job", "Workflow", POD_OWNER_KIND))

    assert _owner_kinds(config) == {
        "kubedag-pod-succeed": ["Job", "Workflow", "ConfigMap"],
        "kubedag-pod-fail": ["Job", "Workflow", "ConfigMap"]}
