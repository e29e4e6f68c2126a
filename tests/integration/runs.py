"""Building PipelineRuns for tests and watching them finish, on the real API server."""

from __future__ import annotations

import json
from typing import Any

from kubedag.testbed import ANNOTATION_DURATION, ANNOTATION_EXIT_CODE, ANNOTATION_MESSAGE
from tests.integration.support import Cluster, wait_for

GROUP, VERSION, RUNS = "kubedag.io", "v1alpha1", "pipelineruns"
FINISHED = ("Succeeded", "Failed", "Cancelled")


def stage(
    name: str,
    *deps: str,
    exit_code: int | None = None,
    duration: str | None = None,
    outputs: dict[str, Any] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A stage whose kwok pod behaves as asked (exit code, run time, reported outputs)."""
    annotations: dict[str, str] = {}
    if exit_code is not None:
        annotations[ANNOTATION_EXIT_CODE] = str(exit_code)
    if duration is not None:
        annotations[ANNOTATION_DURATION] = duration
    if outputs is not None:
        annotations[ANNOTATION_MESSAGE] = json.dumps({"outputs": outputs})
    body: dict[str, Any] = {"name": name, "image": "busybox", **fields}
    if deps:
        body["dependsOn"] = list(deps)
    if annotations:
        body["podAnnotations"] = annotations
    return body


def pipeline(cluster: Cluster, stages: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    placement = cluster.pod_placement()
    defaults = {"nodeSelector": placement["nodeSelector"],
                "tolerations": placement["tolerations"], **fields.pop("defaults", {})}
    return {"stages": stages, "defaults": defaults, **fields}


def create_run(cluster: Cluster, namespace: str, name: str, spec: dict[str, Any]) -> None:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "PipelineRun",
            "metadata": {"name": name}, "spec": spec}
    cluster.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, RUNS, body)


def get_run(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    run: dict[str, Any] = cluster.custom.get_namespaced_custom_object(
        GROUP, VERSION, namespace, RUNS, name)
    return run


def patch_run(cluster: Cluster, namespace: str, name: str, spec: dict[str, Any]) -> None:
    cluster.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, RUNS, name,
                                                  {"spec": spec})


def wait_phase(cluster: Cluster, namespace: str, name: str, *phases: str,
               timeout: float = 60) -> dict[str, Any]:
    wanted = phases or FINISHED

    def probe() -> dict[str, Any] | None:
        run = get_run(cluster, namespace, name)
        return run if (run.get("status") or {}).get("phase") in wanted else None

    try:
        return wait_for(probe, timeout=timeout, what=f"run {name} to reach {wanted}")
    except AssertionError as error:
        status = json.dumps(get_run(cluster, namespace, name).get("status"), indent=1)[:4000]
        raise AssertionError(f"{error}\nstatus: {status}") from None


def stages_of(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    stages: dict[str, dict[str, Any]] = run["status"].get("stages") or {}
    return stages


def jobs_by_stage(cluster: Cluster, namespace: str) -> dict[str, list[Any]]:
    jobs: dict[str, list[Any]] = {}
    for job in cluster.batch.list_namespaced_job(namespace).items:
        jobs.setdefault(job.metadata.labels["kubedag.io/stage"], []).append(job)
    return jobs


def event_reasons(cluster: Cluster, namespace: str, name: str) -> list[str]:
    events = cluster.core.list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name},involvedObject.kind=PipelineRun")
    return [e.reason for e in events.items]


def event_messages(cluster: Cluster, namespace: str, name: str, reason: str) -> list[str]:
    events = cluster.core.list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name},involvedObject.kind=PipelineRun")
    return [e.message for e in events.items if e.reason == reason]


def condition(run: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in run["status"].get("conditions") or [] if c["type"] == type_), None)
