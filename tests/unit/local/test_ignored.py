"""What a local run says it ignores: only what the pipeline sets, with the stages named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubedag.api import PipelineRunSpec
from kubedag.local import ignored_settings

WORKSPACE = Path("/tmp/ws")


def _ignored(stages: list[dict[str, Any]], run: dict[str, Any] | None = None,
             **pipeline: Any) -> list[str]:
    spec = PipelineRunSpec.model_validate(
        {**(run or {}), "pipelineSpec": {"stages": stages, **pipeline}})
    assert spec.pipeline_spec is not None
    return ignored_settings(spec, spec.pipeline_spec, WORKSPACE)


def test_a_plain_processor_pipeline_ignores_nothing() -> None:
    assert _ignored([{"name": "a", "processor": "m:f"},
                     {"name": "b", "processor": "m:g", "dependsOn": ["a"]}]) == []


def test_every_ignored_setting_is_named_with_its_stages() -> None:
    lines = _ignored(
        [{"name": "small", "processor": "m:f", "resources": {"cpu": "1", "memory": "1Gi"}},
         {"name": "gpu", "processor": "m:f", "image": "mine:1", "resources": {"gpu": 2},
          "nodeSelector": {"pool": "gpu"},
          "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
          "podAnnotations": {"a": "b"}},
         {"name": "shell", "image": "busybox", "command": ["sh", "-c", "ls /workspace/x"],
          "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                  {"name": "MODE", "valueFrom": {"configMapKeyRef": {
                      "name": "c", "key": "mode", "optional": True}}}]},
         {"name": "entry", "image": "tool:2", "cache": {"maxAge": "1d"}}],
        run={"suspend": True, "resumeFrom": "old", "priority": 5, "ttlSecondsAfterFinished": 60,
             "workspace": {"persistentVolumeClaim": {"claimName": "data"}}},
        defaults={"serviceAccountName": "worker", "nodeSelector": {"zone": "a"},
                  "image": "worker:1", "podAnnotations": {"x": "y"}})
    assert lines == [
        "resources of stage small: CPU, memory and storage requests and limits are not "
        "enforced; processes share this host",
        "GPUs of stage gpu: no GPU is assigned; the stage sees whatever this host has",
        "nodeSelector of stage gpu: everything runs on this host",
        "tolerations of stage gpu: everything runs on this host",
        "podAnnotations of stage gpu: no pods are created",
        "image of stage gpu: the installed kubedag worker runs the processor",
        "image of stage shell: the command runs on this host, with this host's programs",
        "cache of stage entry: results are neither reused nor stored: the stage cache lives on "
        "the cluster",
        "image entrypoint of stage entry: cannot run locally (no command, no processor): the "
        "stage fails with ContainerConfigError",
        "defaults.image: processor stages run the installed kubedag worker, command stages run "
        "on this host",
        "defaults.nodeSelector: everything runs on this host",
        "defaults.serviceAccountName: processes run as the current user, with no API access",
        "defaults.podAnnotations: no pods are created",
        "env TOKEN of stage shell from Secret s key k: taken from this host's environment "
        "variable TOKEN",
        "env MODE of stage shell from ConfigMap c key mode: taken from this host's environment "
        "variable MODE, else left unset",
        "/workspace in the command of stage shell: means the local workspace /tmp/ws",
        "workspace volume claim: the local directory /tmp/ws is used",
        "suspend: a local run does not pause; it runs to the end",
        "resumeFrom old: a local run reuses no earlier run's stages; every stage runs",
        "priority: there is no operator-wide stage budget locally",
        "ttlSecondsAfterFinished: nothing is deleted; the workspace is kept",
    ]


def test_finally_stages_and_a_template_workspace_are_covered_too() -> None:
    lines = _ignored(
        [{"name": "a", "processor": "m:f"}],
        defaults={"workspace": {"volumeClaimTemplate": {"spec": {
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}}},
        **{"finally": [{"name": "notify", "processor": "m:f", "resources": {"gpu": 1}}]})
    assert lines == [
        "GPUs of stage notify: no GPU is assigned; the stage sees whatever this host has",
        "workspace volume claim: the local directory /tmp/ws is used",
    ]
