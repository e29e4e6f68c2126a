"""What the container of a stage's Job becomes on this host: a command line and its environment.

The Job manifest comes from `kubedag.core.jobspec.build_job`, exactly as the operator would
create it; this module plays the kubelet's part for its single container. The image is not
pulled or run: a processor stage runs the installed `kubedag-worker` (the Job's own command
starts with it), a command stage runs its command on the host. What a kubelet resolves from
the API server (the pod's name, Secrets, ConfigMaps) is resolved from the host or left out.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubedag import contract
from kubedag.core.jobspec import WORKER_COMMAND, JobSettings

# Where a Job mounts the workspace in its pod. A command written for a cluster names this path
# literally (`echo hi > /workspace/out`): locally the same words mean the local workspace.
CONTAINER_WORKSPACE = JobSettings().workspace_path
_CONTAINER_WORKSPACE_PATH = re.compile(rf"(?<![\w./-]){re.escape(CONTAINER_WORKSPACE)}(?![\w.-])")

# The kubelet's waiting reasons for a container that cannot be created; the core maps them to
# the stage reason ContainerConfigError (never retried: the same spec fails the same way).
CANNOT_CREATE = "CreateContainerError"
CANNOT_CONFIGURE = "CreateContainerConfigError"


@dataclass(frozen=True)
class LocalCommand:
    """The process one pod of the Job would be, or why it cannot run here."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    # (waiting reason, message) when the container cannot start on this host.
    cannot_start: tuple[str, str] | None = None


def host_environment(environ: Mapping[str, str],
                     import_path: Sequence[str] = ()) -> dict[str, str]:
    """The host's environment without the contract's variables: a stage sees only the ones its
    Job sets (a shell that ran a worker by hand must not leak its stage into ours).

    The caller's import path goes first on PYTHONPATH: a processor the caller can import (a
    module next to a notebook, a package on a sys.path tweak) is one its stages can import,
    as the worker image must be able to on a cluster."""
    env = {name: value for name, value in environ.items()
           if not name.startswith("KUBEDAG_") and name != contract.ENV_COMPLETION_INDEX}
    # What the interpreter finds by itself (the standard library, site-packages) stays out.
    own = (sys.prefix, sys.base_prefix)
    entries = [str(Path(entry or ".").resolve()) for entry in import_path]
    entries = [e for e in entries if not e.startswith(own)]
    entries += [e for e in env.get("PYTHONPATH", "").split(os.pathsep) if e]
    if entries:
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(entries))
    return env


def container_of(job: Mapping[str, Any]) -> Mapping[str, Any]:
    containers: Sequence[Mapping[str, Any]] = job["spec"]["template"]["spec"]["containers"]
    return containers[0]


def local_command(job: Mapping[str, Any], *, namespace: str, workspace: Path,
                  worker_command: Sequence[str], host_env: Mapping[str, str]) -> LocalCommand:
    """The Job's container as a host process (the completion index and termination-message
    path are per pod: the caller adds them)."""
    container = container_of(job)
    env, config_error = _environment(container.get("env") or [], namespace, host_env)
    command = list(container.get("command") or [])
    args = list(container.get("args") or [])
    if command[: len(WORKER_COMMAND)] == WORKER_COMMAND:
        # worker_command stands for the `kubedag-worker` program; its `run` and args stay.
        argv = [*worker_command, *command[1:], *args]
    elif command:
        argv = [_local_paths(word, workspace) for word in [*command, *args]]
    else:
        return LocalCommand((), env, (CANNOT_CREATE, (
            f"the stage runs the entrypoint of image {container.get('image')}, and a local run "
            "runs no images: give the stage a command (run on this host) or a processor")))
    if config_error is not None:
        return LocalCommand(tuple(argv), env, (CANNOT_CONFIGURE, config_error))
    return LocalCommand(tuple(argv), env)


def _local_paths(word: str, workspace: Path) -> str:
    return _CONTAINER_WORKSPACE_PATH.sub(str(workspace), word)


def _environment(variables: Sequence[Mapping[str, Any]], namespace: str,
                 host_env: Mapping[str, str]) -> tuple[dict[str, str], str | None]:
    """The container's env over the host's, and the first variable that cannot be set.

    A variable read from a Secret or ConfigMap is taken from the host's environment under the
    same name (how a developer passes credentials to a local run); without it, an optional
    one stays unset and a required one stops the container from starting, as on a cluster
    where the key is missing.
    """
    env = dict(host_env)
    problem = None
    for variable in variables:
        name = variable["name"]
        source = variable.get("valueFrom")
        if source is None:
            env[name] = str(variable.get("value", ""))
            continue
        field = (source.get("fieldRef") or {}).get("fieldPath")
        if field == "metadata.namespace":
            env[name] = namespace
        elif field is not None:
            # metadata.name: there is no pod. Without KUBEDAG_POD_NAME the worker logs its
            # progress instead of patching a pod through the API server.
            env.pop(name, None)
        elif name in host_env:
            continue
        else:
            kind, ref = (("Secret", source["secretKeyRef"]) if "secretKeyRef" in source
                         else ("ConfigMap", source["configMapKeyRef"]))
            if not ref.get("optional") and problem is None:
                problem = (f"env {name} comes from {kind} {ref['name']} key {ref['key']}, "
                           f"which a local run cannot read: set {name} in the environment "
                           "of the local run")
    return env, problem
