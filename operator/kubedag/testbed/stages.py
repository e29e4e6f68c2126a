"""kwok Stages: how simulated pods behave, steered by pod annotations.

kwok v0.8.0 has no Stages built in. The node and pod life-cycle Stages come from the kwok module
itself (copied into the binary cache by the build script); the completion Stages are ours, so a
test can choose, per pod, how long it runs, its exit code and its termination message (which is
how a worker reports outputs). Only pods owned by a Job complete: a bare Pod stays Running, which
tests use to get a long-lived pod (`make bench-argo` adds the kinds that own Argo's pods and its
pods-directly floor's: ``complete_owner_kinds``). A finished container reports
`imageID: kwok://<image>`: a simulated node pulls nothing, so its reference stands in for the
digest the stage cache keys on.

Templates bind ``$a := or .metadata.annotations dict`` before indexing: indexing a nil map fails
the template and leaves a pod without annotations Running forever (seen with kwok v0.8.0).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

ANNOTATION_PREFIX: Final = "testbed.kubedag.io"
ANNOTATION_DURATION: Final = f"{ANNOTATION_PREFIX}/duration"  # Go duration, e.g. "3s"
ANNOTATION_EXIT_CODE: Final = f"{ANNOTATION_PREFIX}/exit-code"
ANNOTATION_MESSAGE: Final = f"{ANNOTATION_PREFIX}/message"

UPSTREAM_STAGES: Final = (
    "node/fast/node-initialize.yaml",
    "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "pod/fast/pod-ready.yaml",
    "pod/fast/pod-delete.yaml",
)

_FINISH_SELECTOR = """\
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values: ['Running']
    - key: '.metadata.ownerReferences.[].kind'
      operator: 'In'
      values: {owner_kinds}
    - key: '.metadata.annotations["{exit_code}"]'
      operator: '{exit_code_operator}'
  delay:
    durationMilliseconds: 0
    durationFrom:
      expressionFrom: '.metadata.annotations["{duration}"]'
"""

_FINISH_TEMPLATE = """\
  next:
    statusTemplate: |
      {{{{ $now := Now }}}}
      {{{{ $a := or .metadata.annotations dict }}}}
      {{{{ $message := or ( index $a "{message}" ) "" }}}}
      {{{{ $root := . }}}}
      conditions:
      - lastTransitionTime: {{{{ $now | Quote }}}}
        status: "False"
        type: Ready
      - lastTransitionTime: {{{{ $now | Quote }}}}
        status: "False"
        type: ContainersReady
      containerStatuses:
      {{{{ range $index, $item := .spec.containers }}}}
      - image: {{{{ $item.image | Quote }}}}
        imageID: {{{{ printf "kwok://%s" $item.image | Quote }}}}
        name: {{{{ $item.name | Quote }}}}
        ready: false
        restartCount: 0
        started: false
        state:
          terminated:
            exitCode: {exit_code_expr}
            reason: {reason}
            message: {{{{ $message | Quote }}}}
            finishedAt: {{{{ $now | Quote }}}}
            startedAt: {{{{ $root.status.startTime | Quote }}}}
      {{{{ end }}}}
      phase: {phase}
"""


# Only pods owned by these kinds complete unless a caller asks for more (see the module docstring).
DEFAULT_COMPLETE_OWNER_KINDS: Final = ("Job",)


def _finish_stage(name: str, *, fails: bool, owner_kinds: tuple[str, ...]) -> str:
    selector = _FINISH_SELECTOR.format(
        owner_kinds="[" + ", ".join(f"'{kind}'" for kind in owner_kinds) + "]",
        exit_code=ANNOTATION_EXIT_CODE,
        exit_code_operator="Exists" if fails else "DoesNotExist",
        duration=ANNOTATION_DURATION,
    )
    template = _FINISH_TEMPLATE.format(
        message=ANNOTATION_MESSAGE,
        exit_code_expr=f'{{{{ index $a "{ANNOTATION_EXIT_CODE}" }}}}' if fails else "0",
        reason="Error" if fails else "Completed",
        phase="Failed" if fails else "Succeeded",
    )
    header = f"apiVersion: kwok.x-k8s.io/v1alpha1\nkind: Stage\nmetadata:\n  name: {name}\nspec:\n"
    return header + selector + template


def stages_config(upstream_dir: Path,
                  complete_owner_kinds: tuple[str, ...] = DEFAULT_COMPLETE_OWNER_KINDS) -> str:
    """The multi-document kwok ``--config`` file: upstream Stages plus kubedag's finish Stages,
    which finish the pods owned by an object of one of ``complete_owner_kinds``."""
    documents = [(upstream_dir / rel).read_text().strip() for rel in UPSTREAM_STAGES]
    for name, fails in (("kubedag-pod-succeed", False), ("kubedag-pod-fail", True)):
        documents.append(_finish_stage(name, fails=fails, owner_kinds=complete_owner_kinds).strip())
    return "\n---\n".join(documents) + "\n"
