"""Build the Kubernetes Job that runs one attempt of one stage (pure: data in, manifest out)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubedag import contract
from kubedag.api import PipelineRunSpec, PipelineSpec, Stage, VolumeClaimTemplate
from kubedag.core.naming import job_name, label_value, workspace_claim_name
from kubedag.core.observe import LABEL_FALLBACK, LABEL_RUN_UID
from kubedag.core.substitution import substitute

MANAGED_BY = "kubedag-operator"
CONTAINER_NAME = "stage"
WORKER_COMMAND = ["kubedag-worker", "run"]
WORKSPACE_VOLUME = "workspace"
TMP_VOLUME = "tmp"
TMP_PATH = "/tmp"
# Kueue's labels on a Job: the LocalQueue that admits it, and its WorkloadPriorityClass.
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
KUEUE_PRIORITY_CLASS_LABEL = "kueue.x-k8s.io/priority-class"


@dataclass(frozen=True)
class RunIdentity:
    """Who owns the Jobs: enough for names, labels and the ownerReference."""

    name: str
    namespace: str
    uid: str
    pipeline: str  # the referenced Pipeline's name, or the run's own name for an inline spec


@dataclass(frozen=True)
class JobSettings:
    """Operator-wide choices, from its configuration."""

    worker_image: str = "ghcr.io/kubedag/worker:0.1.0"
    job_ttl_seconds: int = 3600
    workspace_path: str = "/workspace"
    # Stage pods pass the `restricted` Pod Security Standard: they run as this non-root user
    # and group (the worker image's), with fsGroup so that a workspace volume is writable.
    run_as_user: int = 10001
    # A cancelled run's pods get SIGTERM, then SIGKILL this many seconds later.
    termination_grace_seconds: int = 30


@dataclass(frozen=True)
class Queueing:
    """The Kueue LocalQueue that admits a run's stage Jobs, and their WorkloadPriorityClass."""

    queue_name: str
    priority_class_name: str | None = None

    @classmethod
    def of(cls, spec: PipelineRunSpec, pipeline: PipelineSpec) -> Queueing | None:
        """The run's own queue, else its pipeline's default; None: the run does not use Kueue."""
        queue = spec.queue_name or (pipeline.defaults.queue_name if pipeline.defaults else None)
        return cls(queue, spec.priority_class_name) if queue else None

    def job_labels(self) -> dict[str, str]:
        """On the Job only, never its pod template: Kueue's pod integration would otherwise
        take each pod for a workload of its own."""
        labels = {KUEUE_QUEUE_LABEL: self.queue_name}
        if self.priority_class_name:
            labels[KUEUE_PRIORITY_CLASS_LABEL] = self.priority_class_name
        return labels


def fan_out_items(stage: Stage, params: Mapping[str, Any]) -> list[Any] | None:
    if stage.fan_out is None:
        return None
    if stage.fan_out.items is not None:
        return list(stage.fan_out.items)
    name = (stage.fan_out.items_from or "")[len("$(params."):-1]
    value = params.get(name)
    if not isinstance(value, list):
        raise ValueError(f"fanOut.itemsFrom: param {name!r} is not an array")
    return value


def stage_image(stage: Stage, pipeline: PipelineSpec, settings: JobSettings) -> str:
    """The image a stage's pods run: its own, else (a processor stage) the pipeline's default
    worker image, else the operator's."""
    defaults = pipeline.defaults
    return stage.image or (defaults.image if defaults else None) or settings.worker_image


def run_labels(run: RunIdentity, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "kubedag",
        "app.kubernetes.io/instance": label_value(run.name),
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/part-of": label_value(run.pipeline),
        contract.LABEL_RUN: label_value(run.name),
        LABEL_RUN_UID: run.uid,
        contract.LABEL_PIPELINE: label_value(run.pipeline),
    }


# Labels the Job carries and its pod template does not: each repeats a kubedag.io/ label
# (instance = run, part-of = pipeline) or says what the Job's kind already says. Every write
# of a pod (the Job controller's create, the scheduler's binding, the kubelet's status updates)
# stores, diffs and sends each label again to every pod watcher; measured with the bench
# floor creating kubedag's Jobs, the pod's own size is about half of what kubedag's Jobs cost
# the control plane over bare ones.
JOB_ONLY_LABELS = frozenset({"app.kubernetes.io/instance", "app.kubernetes.io/component",
                             "app.kubernetes.io/part-of"})


def labels_for(run: RunIdentity, stage: str, attempt: int, *,
               fallback: bool = False) -> dict[str, str]:
    labels = {**run_labels(run, "stage"), contract.LABEL_STAGE: stage,
              contract.LABEL_ATTEMPT: str(attempt)}
    if fallback:
        labels[LABEL_FALLBACK] = "true"
    return labels


def owner_reference(run: RunIdentity) -> dict[str, Any]:
    return {
        "apiVersion": f"{contract.API_GROUP}/{contract.API_VERSION}",
        "kind": "PipelineRun",
        "name": run.name,
        "uid": run.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def build_claim(run: RunIdentity, template: VolumeClaimTemplate) -> dict[str, Any]:
    """The run's workspace PersistentVolumeClaim, owned by the run (deleted with it)."""
    meta = template.metadata
    spec: dict[str, Any] = {
        "accessModes": [str(mode) for mode in template.spec.access_modes],
        "resources": {"requests": {"storage": template.spec.resources.requests.storage}},
    }
    if template.spec.storage_class_name is not None:
        spec["storageClassName"] = template.spec.storage_class_name
    metadata: dict[str, Any] = {
        "name": workspace_claim_name(run.name),
        "namespace": run.namespace,
        "labels": {**((meta.labels or {}) if meta else {}), **run_labels(run, "workspace")},
        "ownerReferences": [owner_reference(run)],
    }
    if meta and meta.annotations:
        metadata["annotations"] = dict(meta.annotations)
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": metadata,
            "spec": spec}


def build_job(
    *,
    run: RunIdentity,
    pipeline: PipelineSpec,
    stage: Stage,
    attempt: int,
    params: Mapping[str, Any],
    outputs: Mapping[str, Mapping[str, Any] | None],
    settings: JobSettings,
    workspace_claim: str | None = None,
    queueing: Queueing | None = None,
    fallback: bool = False,
) -> dict[str, Any]:
    """The Job manifest; ValueError (SubstitutionError) for a reference that cannot resolve.

    ``workspace_claim``: the PersistentVolumeClaim mounted at the workspace path (None: an
    emptyDir). The pod passes the `restricted` Pod Security Standard with a read-only root
    filesystem: /tmp and the workspace are its only writable paths. ``queueing``: the Job is
    created suspended with Kueue's labels, and Kueue unsuspends it when it admits it (the
    Job controller creates no pod before that). ``fallback``: ``stage`` is a stage's fallback
    (see core.fallback.fallback_stage): its Job is named and labelled as the fallback's.
    """
    defaults = pipeline.defaults
    labels = {**((defaults.labels or {}) if defaults else {}),
              **labels_for(run, stage.name, attempt, fallback=fallback)}
    # Least privilege: a stage pod gets API credentials only from a pipeline that names the
    # ServiceAccount they are for. Without one it would carry the namespace's `default` token,
    # and its own name and namespace, which serve only to patch its progress (the worker logs
    # it instead). Both also make every stored pod and pod event bigger: with them, the bench
    # floor's 40 runs of 20 stages took 6-10 % longer.
    account = defaults.service_account_name if defaults else None
    env = _environment(run, stage, attempt, params, outputs, settings, api_access=bool(account))
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": stage_image(stage, pipeline, settings),
        "env": env,
        "resources": _resources(stage),
        "terminationMessagePolicy": "File",
        "volumeMounts": [
            {"name": WORKSPACE_VOLUME, "mountPath": settings.workspace_path},
            {"name": TMP_VOLUME, "mountPath": TMP_PATH},
        ],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
        },  # runAsNonRoot: the pod's securityContext says it for every container
    }
    if stage.processor is not None:
        # The worker's own argv stays its own: a processor's args reach it as context.args.
        container["command"] = list(WORKER_COMMAND)
    elif stage.command is not None:
        container["command"] = [substitute(a, params, outputs) for a in stage.command]
    if stage.args is not None and stage.processor is None:
        container["args"] = [substitute(a, params, outputs) for a in stage.args]

    workspace: dict[str, Any] = (
        {"persistentVolumeClaim": {"claimName": workspace_claim}} if workspace_claim
        else {"emptyDir": {}})
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": settings.termination_grace_seconds,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": settings.run_as_user,
            "runAsGroup": settings.run_as_user,
            "fsGroup": settings.run_as_user,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [{"name": WORKSPACE_VOLUME, **workspace},
                    {"name": TMP_VOLUME, "emptyDir": {}}],
    }
    if workspace_claim:
        # A claim may hold a previous stage's files: re-own them only when the volume's root
        # is not the group's yet (an emptyDir is new, so nothing to say).
        pod_spec["securityContext"]["fsGroupChangePolicy"] = "OnRootMismatch"
    node_selector = {**((defaults.node_selector or {}) if defaults else {}),
                     **(stage.node_selector or {})}
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    tolerations = [*((defaults.tolerations or []) if defaults else []), *(stage.tolerations or [])]
    if tolerations:
        pod_spec["tolerations"] = [t.model_dump(mode="json", by_alias=True, exclude_none=True)
                                   for t in tolerations]
    if account:
        pod_spec["serviceAccountName"] = account
    else:
        pod_spec["automountServiceAccountToken"] = False
    if defaults and defaults.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": s} for s in defaults.image_pull_secrets]

    pod_labels = {key: value for key, value in labels.items() if key not in JOB_ONLY_LABELS}
    annotations = {**((defaults.pod_annotations or {}) if defaults else {}),
                   **(stage.pod_annotations or {})}
    job_spec: dict[str, Any] = {
        "backoffLimit": 0,  # kubedag owns retries: each attempt is a new Job
        "ttlSecondsAfterFinished": settings.job_ttl_seconds,
        "template": {"metadata": {"labels": pod_labels, "annotations": annotations},
                     "spec": pod_spec},
    }
    if stage.timeout_seconds:
        job_spec["activeDeadlineSeconds"] = math.ceil(
            stage.timeout_seconds * pipeline.stage_timeout_multiplier)
    items = fan_out_items(stage, params)
    if items is not None and stage.fan_out is not None:
        batches = max(1, math.ceil(len(items) / stage.fan_out.batch_size))
        job_spec.update(completionMode="Indexed", completions=batches,
                        parallelism=min(stage.fan_out.parallelism or batches, batches))
    job_labels = labels
    if queueing is not None:
        job_labels = {**labels, **queueing.job_labels()}
        job_spec["suspend"] = True
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(run.name, stage.name, attempt, fallback=fallback),
            "namespace": run.namespace,
            "labels": job_labels,
            "ownerReferences": [owner_reference(run)],
        },
        "spec": job_spec,
    }


def _environment(
    run: RunIdentity, stage: Stage, attempt: int, params: Mapping[str, Any],
    outputs: Mapping[str, Mapping[str, Any] | None], settings: JobSettings, *,
    api_access: bool,
) -> list[dict[str, Any]]:
    """``api_access``: the pod may patch its own progress, so it is told who it is (the
    downward API fills both variables in)."""
    upstream = upstream_outputs(stage, outputs)
    env: list[dict[str, Any]] = [
        {"name": contract.ENV_NAMESPACE,
         "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": contract.ENV_POD_NAME, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ] if api_access else []
    env += [
        {"name": contract.ENV_RUN, "value": run.name},
        {"name": contract.ENV_STAGE, "value": stage.name},
        {"name": contract.ENV_ATTEMPT, "value": str(attempt)},
        {"name": contract.ENV_PARAMS, "value": json.dumps(dict(params), separators=(",", ":"))},
        {"name": contract.ENV_INPUTS, "value": json.dumps(upstream, separators=(",", ":"))},
        {"name": contract.ENV_WORKSPACE, "value": settings.workspace_path},
        # Where a command reports its outputs: the same variable on a cluster and in a local
        # run (which points it at a file of its own).
        {"name": contract.ENV_TERMINATION_MESSAGE_PATH,
         "value": contract.TERMINATION_MESSAGE_PATH},
    ]
    if stage.processor is not None:
        env.append({"name": contract.ENV_PROCESSOR, "value": stage.processor})
        if stage.args is not None:
            args = [substitute(a, params, outputs) for a in stage.args]
            env.append({"name": contract.ENV_ARGS, "value": json.dumps(args)})
    items = fan_out_items(stage, params)
    if items is not None and stage.fan_out is not None:
        env.append({"name": contract.ENV_FANOUT_ITEMS,
                    "value": json.dumps(items, separators=(",", ":"))})
        env.append({"name": contract.ENV_FANOUT_BATCH_SIZE, "value": str(stage.fan_out.batch_size)})
    env.extend(stage_env(stage, params, outputs))
    return env


def upstream_outputs(
    stage: Stage, outputs: Mapping[str, Mapping[str, Any] | None]
) -> dict[str, Mapping[str, Any]]:
    """The outputs a stage is given as its inputs: those of its dependsOn stages, {} for one
    that reported none (or was skipped)."""
    return {name: outputs.get(name) or {} for name in stage.depends_on or []}


def stage_env(
    stage: Stage, params: Mapping[str, Any], outputs: Mapping[str, Mapping[str, Any] | None]
) -> list[dict[str, Any]]:
    """The stage's own env entries as the container gets them: values substituted, a
    ``valueFrom`` kept as its reference (the kubelet resolves it, so kubedag never sees a
    secret's value)."""
    env: list[dict[str, Any]] = []
    for var in stage.env or []:
        if var.value_from is not None:
            env.append({"name": var.name, "valueFrom": var.value_from.model_dump(
                mode="json", by_alias=True, exclude_none=True)})
        else:
            env.append({"name": var.name, "value": substitute(var.value, params, outputs)})
    return env


def _resources(stage: Stage) -> dict[str, Any]:
    spec = stage.resources
    if spec is None:
        return {}
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if spec.cpu:
        requests["cpu"] = spec.cpu
    if spec.memory:
        requests["memory"] = limits["memory"] = spec.memory
    if spec.ephemeral_storage:
        requests["ephemeral-storage"] = spec.ephemeral_storage
    if spec.gpu:
        # Extended resources must have limits; requests default to them.
        limits[spec.gpu_resource_name] = str(spec.gpu)
    out: dict[str, Any] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out
