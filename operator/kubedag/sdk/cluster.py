"""What the SDK reads from a cluster: past runs of a pipeline and the nodes' capacity (for the
estimate), and the API server's verdict on a manifest (for validate)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException

from kubedag import contract
from kubedag.client import Client
from kubedag.client.errors import api_errors, api_message
from kubedag.client.objects import PLURAL_PIPELINES, REQUEST_TIMEOUT_SECONDS
from kubedag.core.dag import FieldError
from kubedag.core.estimate import NodeCapacity, median_durations, node_capacity, stage_seconds


def stage_durations(client: Client, pipeline: str) -> dict[str, float]:
    """Median duration of each stage over the finished runs of `pipeline` in the client's
    namespace (runs of the Pipeline by reference, and inline runs labelled with its name, as
    `submit` labels them)."""
    statuses = [run.status for run in client.list_run_objects(pipeline)
                if run.status is not None and run.status.phase.finished]
    return median_durations(stage_seconds(status) for status in statuses)


def node_capacities(client: Client) -> list[NodeCapacity]:
    """Every schedulable node's labels, allocatable resources and taints, summarised as the
    operator summarises the nodes it watches (`kubedag.core.estimate.node_capacity`)."""
    with api_errors("listing nodes"):
        nodes = client.core.list_node(_request_timeout=REQUEST_TIMEOUT_SECONDS).items
    serialise = client.core.api_client.sanitize_for_serialization
    summaries = (node_capacity(serialise(node)) for node in nodes)
    return [summary for summary in summaries if summary is not None]


def server_errors(client: Client, document: Mapping[str, Any]) -> list[FieldError]:
    """What the API server says about creating the Pipeline, as a dry run (nothing is stored):
    the CRD's schema and CEL rules themselves, each cause at its field path."""
    namespace = document["metadata"].get("namespace") or client.namespace
    try:
        client.custom.create_namespaced_custom_object(
            contract.API_GROUP, contract.API_VERSION, namespace, PLURAL_PIPELINES,
            dict(document), dry_run="All", _request_timeout=REQUEST_TIMEOUT_SECONDS)
    except ApiException as error:
        if error.status == 409:  # AlreadyExists: the manifest itself was accepted
            return []
        try:
            body = json.loads(error.body or "")
        except ValueError:
            body = {}
        causes = (body.get("details") or {}).get("causes") or [] if isinstance(body, dict) else []
        return [FieldError(str(c.get("field") or "(server)"), str(c.get("message") or ""))
                for c in causes] or [FieldError("(server)", api_message(error))]
    return []
