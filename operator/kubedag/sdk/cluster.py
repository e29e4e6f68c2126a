"""What the estimate reads from a cluster: past runs of a pipeline and the nodes' capacity."""

from __future__ import annotations

from typing import Any

from kubedag import api, contract
from kubedag.client import Client
from kubedag.client.objects import PLURAL_RUNS, REQUEST_TIMEOUT_SECONDS
from kubedag.core.estimate import NodeCapacity, median_durations, stage_seconds
from kubedag.core.quantity import parse_quantity


def stage_durations(client: Client, pipeline: str) -> dict[str, float]:
    """Median duration of each stage over the finished runs of `pipeline`: runs the SDK
    submitted (labelled `kubedag.io/pipeline=<name>`) and runs of the Pipeline by reference."""
    listing: dict[str, Any] = client.custom.list_namespaced_custom_object(
        contract.API_GROUP, contract.API_VERSION, client.namespace, PLURAL_RUNS,
        label_selector=f"{contract.LABEL_PIPELINE}={pipeline}",
        _request_timeout=REQUEST_TIMEOUT_SECONDS)
    statuses = {item["metadata"]["name"]: api.PipelineRunStatus.model_validate(item["status"])
                for item in listing.get("items", []) if item.get("status")}
    for run in client.list_run_objects(pipeline):
        if run.status is not None:
            statuses.setdefault(run.metadata["name"], run.status)
    finished = [s for s in statuses.values() if s.phase.finished]
    return median_durations(stage_seconds(status) for status in finished)


def node_capacities(client: Client) -> list[NodeCapacity]:
    """Every schedulable node's labels and allocatable resources."""
    nodes = client.core.list_node(_request_timeout=REQUEST_TIMEOUT_SECONDS).items
    return [
        NodeCapacity(
            name=node.metadata.name,
            labels=dict(node.metadata.labels or {}),
            allocatable={k: parse_quantity(v) for k, v in (node.status.allocatable or {}).items()},
        )
        for node in nodes
        if not (node.spec and node.spec.unschedulable)
    ]
