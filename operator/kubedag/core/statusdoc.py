"""A run's status as the API stores it, serialised once per part rather than once per pass.

decide() replaces a checkpoint only when the stage changed (its helpers `model_copy` what they
update), and the pipeline snapshot never changes after the run starts. So the JSON of every part
that did not change is the JSON of the previous pass: it is kept per part (`WeakMemo`) and
`status_document` reuses it. On `make bench`'s 900-stage lattice, dumping the whole status on
every pass was 14 % of the operator's CPU (py-spy), the 900-stage snapshot most of it.

The documents returned share their unchanged parts with earlier ones: nothing may mutate them
(the merge patch and the status writer only read them).
"""

from __future__ import annotations

from typing import Any

from kubedag.api import PipelineRunStatus, PipelineSpec, StageCheckpoint, to_k8s
from kubedag.core.memo import WeakMemo

_checkpoint_document: WeakMemo[StageCheckpoint, dict[str, Any]] = WeakMemo(to_k8s)
# The snapshot as the status serialises it: compact, without default values.
_snapshot_document: WeakMemo[PipelineSpec, dict[str, Any]] = WeakMemo(
    lambda spec: to_k8s(PipelineRunStatus(pipeline_spec=spec))["pipelineSpec"])


def status_document(status: PipelineRunStatus) -> dict[str, Any]:
    """``to_k8s(status)``, reusing the JSON of the checkpoints and of the snapshot that are the
    same objects as in an earlier pass."""
    document = to_k8s(status.model_copy(update={"pipeline_spec": None, "stages": None}))
    if status.pipeline_spec is not None:
        document["pipelineSpec"] = _snapshot_document(status.pipeline_spec)
    if status.stages is not None:
        document["stages"] = {name: _checkpoint_document(cp)
                              for name, cp in status.stages.items()}
    return document
