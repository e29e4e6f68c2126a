"""What the estimate reads from a cluster: past runs of a pipeline and the nodes' capacity."""

from __future__ import annotations

from kubedag.client import Client
from kubedag.client.errors import api_errors
from kubedag.client.objects import REQUEST_TIMEOUT_SECONDS
from kubedag.core.estimate import NodeCapacity, median_durations, stage_seconds
from kubedag.core.quantity import parse_quantity


def stage_durations(client: Client, pipeline: str) -> dict[str, float]:
    """Median duration of each stage over the finished runs of `pipeline` in the client's
    namespace (runs of the Pipeline by reference, and inline runs labelled with its name, as
    `submit` labels them)."""
    statuses = [run.status for run in client.list_run_objects(pipeline)
                if run.status is not None and run.status.phase.finished]
    return median_durations(stage_seconds(status) for status in statuses)


def node_capacities(client: Client) -> list[NodeCapacity]:
    """Every schedulable node's labels and allocatable resources."""
    with api_errors("listing nodes"):
        nodes = client.core.list_node(_request_timeout=REQUEST_TIMEOUT_SECONDS).items
    capacities = []
    for node in nodes:
        if node.metadata is None or node.metadata.name is None or (
                node.spec is not None and node.spec.unschedulable):
            continue
        allocatable = (node.status.allocatable if node.status else None) or {}
        capacities.append(NodeCapacity(
            name=node.metadata.name, labels=dict(node.metadata.labels or {}),
            allocatable={k: parse_quantity(v) for k, v in allocatable.items()}))
    return capacities
