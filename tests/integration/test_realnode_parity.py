"""Local runs keep their promise: every example pipeline and every template runs on this machine
(`kubedag.local`, worker processes) and on the test bed (the chart's operator, real containers
on the real node), and the two agree stage by stage on phase, reason and outputs.

Both sides get the same inputs: the documents each pipeline reads are copied into the local
workspace folder and into the cluster run's workspace claim. Where an example pins what only a
cluster has (an image tag the test bed does not hold, the nodes to run on), the cluster side is
adapted, never the pipeline's logic.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kubedag import api
from kubedag.local import run_local
from kubedag.templates import from_template, list_templates
from kubedag.testbed.claims import copy_into_claim, create_claim
from tests.integration.realnode_operator import (
    WORK_NAMESPACE,
    WORKER_SERVICE_ACCOUNT,
    InstalledOperator,
)
from tests.integration.realnode_support import RealNodeHandle
from tests.integration.runs import FINISHED, create_run, get_run
from tests.integration.support import Cluster, wait_for

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
DOCUMENTS = EXAMPLES / "documents"
CORPUS = EXAMPLES / "templates" / "corpus"
# Images examples name that the test bed holds under another reference.
TEST_BED_IMAGES = {"busybox:1.36": "kubedag.local/busybox:1.35"}


@dataclass(frozen=True)
class Example:
    name: str
    run: api.PipelineRun  # with its pipeline inline
    inputs: Path | None  # copied to input/ of the workspace


def _example_runs() -> Iterator[Example]:
    """Every PipelineRun under examples/ (a pipelineRef resolved against the Pipelines there),
    then every template on the sample corpus."""
    documents = [(path, doc) for path in sorted(EXAMPLES.rglob("*.yaml"))
                 if "invalid" not in path.parts
                 for doc in yaml.safe_load_all(path.read_text()) if doc]
    pipelines = {d["metadata"]["name"]: d["spec"] for _, d in documents if d["kind"] == "Pipeline"}
    for path, doc in documents:
        if doc["kind"] != "PipelineRun":
            continue
        spec = dict(doc["spec"])
        if "pipelineRef" in spec:
            spec["pipelineSpec"] = pipelines[spec.pop("pipelineRef")["name"]]
        run = api.PipelineRun.model_validate({**doc, "spec": spec})
        assert run.spec.pipeline_spec is not None
        reads_documents = any(s.processor for s in run.spec.pipeline_spec.all_stages())
        yield Example(str(path.relative_to(EXAMPLES)), run, DOCUMENTS if reads_documents else None)
    for template in list_templates():
        pipeline = from_template(template.name)
        yield Example(f"template {template.name}", pipeline.to_run(name=template.name), CORPUS)


EXAMPLE_RUNS = list(_example_runs())


def _on_the_test_bed(example: Example, real_node: RealNodeHandle, claim: str | None,
                     name: str) -> dict[str, Any]:
    """The example's run as the cluster gets it: pods on the real node as the chart's worker
    account, images the test bed holds, and the workspace claim holding the inputs."""
    spec = example.run.spec
    assert spec.pipeline_spec is not None
    placement = real_node.pod_placement()
    defaults = spec.pipeline_spec.defaults or api.PipelineDefaults()
    pipeline = spec.pipeline_spec.model_copy(update={
        "defaults": defaults.model_copy(update={
            "service_account_name": WORKER_SERVICE_ACCOUNT,
            "node_selector": placement["nodeSelector"],
            "tolerations": [api.Toleration.model_validate(t) for t in placement["tolerations"]],
        }),
        "stages": [_local_image(s) for s in spec.pipeline_spec.stages],
        "finally_": [_local_image(s) for s in spec.pipeline_spec.finally_ or []] or None,
    })
    update: dict[str, Any] = {"pipeline_spec": pipeline, "ttl_seconds_after_finished": None}
    if claim is not None:
        update["workspace"] = api.Workspace.model_validate(
            {"persistentVolumeClaim": {"claimName": claim}})
    run = example.run.model_copy(update={"spec": spec.model_copy(update=update),
                                         "metadata": {"name": name}})
    return api.to_k8s(run)["spec"]  # type: ignore[no-any-return]


def _local_image(stage: api.Stage) -> api.Stage:
    image = TEST_BED_IMAGES.get(stage.image or "", stage.image)
    return stage.model_copy(update={"image": image})


def _stages(status: dict[str, Any] | api.PipelineRunStatus) -> dict[str, tuple[Any, ...]]:
    """Phase, reason and outputs of every stage: what the two runs must agree on."""
    if isinstance(status, api.PipelineRunStatus):
        status = api.to_k8s(status)
    stages: dict[str, dict[str, Any]] = status.get("stages") or {}
    return {name: (cp.get("phase"), cp.get("reason"), cp.get("outputs"))
            for name, cp in sorted(stages.items())}


def test_every_example_and_template_is_covered() -> None:
    names = {e.name for e in EXAMPLE_RUNS}
    assert {"hello-run.yaml", "workspace-run.yaml", "document-pipeline-run.yaml",
            "demo/document-run-real.yaml", "template document-processing", "template rag",
            "template knowledge-graph"} <= names


def test_local_runs_match_the_cluster_stage_by_stage(
    cluster: Cluster, installed: InstalledOperator, real_node: RealNodeHandle, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:5]

    def start_on_cluster(index: int, example: Example) -> str:
        name = f"parity-{index}-{suffix}"
        claim = None
        if example.inputs is not None:
            claim = f"{name}-ws"
            create_claim(cluster.api_client, WORK_NAMESPACE, claim, size="64Mi")
            copy_into_claim(cluster.plane, WORK_NAMESPACE, claim,
                            sorted(example.inputs.iterdir()), "input", real_node.pod_placement())
        create_run(cluster, WORK_NAMESPACE, name,
                   _on_the_test_bed(example, real_node, claim, name))
        return name

    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(start_on_cluster, i, e) for i, e in enumerate(EXAMPLE_RUNS)]
        # The local runs meanwhile, one after another, on this same machine.
        local: dict[str, dict[str, tuple[Any, ...]]] = {}
        local_seconds: dict[str, float] = {}
        for i, example in enumerate(EXAMPLE_RUNS):
            workspace = tmp_path / f"local-{i}"
            workspace.mkdir()
            if example.inputs is not None:
                shutil.copytree(example.inputs, workspace / "input")
            t0 = time.monotonic()
            done = run_local(example.run, workspace=workspace)
            local_seconds[example.name] = time.monotonic() - t0
            local[example.name] = _stages(done.status)
        names = {example.name: future.result() for example, future in zip(
            EXAMPLE_RUNS, futures, strict=True)}

    def finished(name: str) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            run = get_run(cluster, WORK_NAMESPACE, name)
            return run if (run.get("status") or {}).get("phase") in FINISHED else None
        return wait_for(probe, timeout=300, what=f"run {name} to finish")

    mismatches = {}
    print()
    for example in EXAMPLE_RUNS:
        run = finished(names[example.name])
        on_cluster = _stages(run["status"])
        print(f"{example.name:32} local {local_seconds[example.name]:5.1f} s; "
              f"{run['status']['phase']:9} on the real node "
              f"({time.monotonic() - began:.0f} s after the first was submitted)")
        if on_cluster != local[example.name]:
            mismatches[example.name] = {
                stage: {"local": local[example.name].get(stage), "cluster": value}
                for stage, value in on_cluster.items()
                if local[example.name].get(stage) != value}
    assert not mismatches, mismatches
    # Not trivially equal: most examples really produced outputs on both sides.
    with_outputs = [e.name for e in EXAMPLE_RUNS
                    if any(outputs for _, _, outputs in local[e.name].values())]
    assert len(with_outputs) >= 5, with_outputs
