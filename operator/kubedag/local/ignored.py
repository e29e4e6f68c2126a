"""What a local run cannot honour, said up front rather than silently dropped.

kfp.local drops GPUs and node selectors without a word, so a pipeline that "works locally"
then surprises on the cluster. A local run lists every setting the pipeline actually uses that
it ignores or runs differently, naming the stages, before the first stage starts.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from kubedag.api import PipelineDefaults, PipelineRunSpec, PipelineSpec, Stage
from kubedag.core.plan import short_list
from kubedag.local.container import CONTAINER_WORKSPACE

StageTest = Callable[[Stage], bool]


def _runs_image(stage: Stage) -> bool:
    """The stage runs its image's own entrypoint: nothing a host can run."""
    return stage.processor is None and stage.command is None


def _mentions_workspace(stage: Stage) -> bool:
    return stage.command is not None and any(
        CONTAINER_WORKSPACE in word for word in [*stage.command, *(stage.args or [])])


def _non_gpu_resources(stage: Stage) -> bool:
    r = stage.resources
    return r is not None and bool(r.cpu or r.memory or r.ephemeral_storage)


_NO_CACHE = "results are neither reused nor stored: the stage cache lives on the cluster"

# (what the stages set, test, what a local run does instead), in the order people read them.
_STAGE_SETTINGS: list[tuple[str, StageTest, str]] = [
    ("resources", _non_gpu_resources,
     "CPU, memory and storage requests and limits are not enforced; processes share this host"),
    ("GPUs", lambda s: bool(s.resources and s.resources.gpu),
     "no GPU is assigned; the stage sees whatever this host has"),
    ("nodeSelector", lambda s: bool(s.node_selector), "everything runs on this host"),
    ("tolerations", lambda s: bool(s.tolerations), "everything runs on this host"),
    ("podAnnotations", lambda s: bool(s.pod_annotations), "no pods are created"),
    ("image", lambda s: s.processor is not None and s.image is not None,
     "the installed kubedag worker runs the processor"),
    ("image", lambda s: s.command is not None,
     "the command runs on this host, with this host's programs"),
    ("cache", lambda s: s.cache is not None and s.cache.enabled, _NO_CACHE),
    ("image entrypoint", _runs_image,
     "cannot run locally (no command, no processor): the stage fails with "
     "ContainerConfigError"),
]

_DEFAULTS: list[tuple[str, Callable[[PipelineDefaults], object]]] = [
    ("defaults.image", lambda d: d.image),
    ("defaults.nodeSelector", lambda d: d.node_selector),
    ("defaults.tolerations", lambda d: d.tolerations),
    ("defaults.serviceAccountName", lambda d: d.service_account_name),
    ("defaults.imagePullSecrets", lambda d: d.image_pull_secrets),
    ("defaults.podAnnotations", lambda d: d.pod_annotations),
    ("defaults.labels", lambda d: d.labels),
    ("defaults.queueName", lambda d: d.queue_name),
    ("defaults.cache", lambda d: d.cache),
]
_DEFAULTS_WHY = {
    "defaults.image": "processor stages run the installed kubedag worker, command stages run "
                      "on this host",
    "defaults.serviceAccountName": "processes run as the current user, with no API access",
    "defaults.imagePullSecrets": "no images are pulled",
    "defaults.labels": "no Jobs or pods are created",
    "defaults.podAnnotations": "no pods are created",
    "defaults.queueName": "there is no Kueue locally; stages start at once",
    "defaults.cache": _NO_CACHE,
}


def ignored_settings(spec: PipelineRunSpec, pipeline: PipelineSpec, workspace: Path) -> list[str]:
    """One line per setting the pipeline or run uses that a local run ignores or changes."""
    lines: list[str] = []
    stages = pipeline.all_stages()
    for what, test, why in _STAGE_SETTINGS:
        names = [s.name for s in stages if test(s)]
        if names:
            lines.append(f"{what} of {_stages(names)}: {why}")
    defaults = pipeline.defaults or PipelineDefaults()
    for field, value in _DEFAULTS:
        if value(defaults):
            lines.append(f"{field}: {_DEFAULTS_WHY.get(field, 'everything runs on this host')}")
    for stage in stages:
        for variable in stage.env or []:
            if variable.value_from is None:
                continue
            ref = variable.value_from.secret_key_ref or variable.value_from.config_map_key_ref
            kind = "Secret" if variable.value_from.secret_key_ref else "ConfigMap"
            assert ref is not None  # the model allows exactly one
            lines.append(f"env {variable.name} of stage {stage.name} from {kind} {ref.name} "
                         f"key {ref.key}: taken from this host's environment variable "
                         f"{variable.name}" + (", else left unset" if ref.optional else ""))
    names = [s.name for s in stages if _mentions_workspace(s)]
    if names:
        lines.append(f"{CONTAINER_WORKSPACE} in the command of {_stages(names)}: means the "
                     f"local workspace {workspace}")
    if spec.workspace or defaults.workspace:
        lines.append(f"workspace volume claim: the local directory {workspace} is used")
    lines.extend(_run_settings(spec))
    return lines


def _run_settings(spec: PipelineRunSpec) -> list[str]:
    lines = []
    if spec.suspend:
        lines.append("suspend: a local run does not pause; it runs to the end")
    if spec.resume_from:
        lines.append(f"resumeFrom {spec.resume_from}: a local run reuses no earlier run's "
                     "stages; every stage runs")
    if spec.priority:
        lines.append("priority: there is no operator-wide stage budget locally")
    if spec.queue_name:
        lines.append(f"queueName {spec.queue_name}: there is no Kueue locally; stages start at "
                     "once")
    if spec.ttl_seconds_after_finished is not None:
        lines.append("ttlSecondsAfterFinished: nothing is deleted; the workspace is kept")
    return lines


def _stages(names: list[str]) -> str:
    return f"stage {names[0]}" if len(names) == 1 else f"stages {short_list(names)}"

