"""A run's status as stored (`to_k8s`), serialising again only what changed since its last pass.

decide() replaces a checkpoint it changes (`model_copy`) and keeps the others, and keeps the
pipeline snapshot, so a checkpoint or snapshot that is the same object as at the last pass
serialises as it did then. For a 900-stage run, re-serialising every checkpoint and the snapshot
on each pass was a sixth of the operator's CPU (py-spy, `make bench`'s lattice); a pass changes
a few checkpoints. The cached pieces are shared by the dictionaries returned, which nothing
downstream changes in place (merge_patch and the status writer only read them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from kubedag.api import PipelineRunStatus, to_k8s
from kubedag.api.status import compact_snapshot

_SNAPSHOT = PipelineRunStatus.model_fields["pipeline_spec"].alias or "pipelineSpec"
_STAGES = PipelineRunStatus.model_fields["stages"].alias or "stages"


class StatusDumps:
    """Per run: the serialised form of each checkpoint and snapshot, by object identity."""

    def __init__(self) -> None:
        # Run UID -> id(model) -> (the model, kept so that its id is not reused; its form).
        self._pieces: dict[str, dict[int, tuple[BaseModel, dict[str, Any]]]] = {}

    def dump(self, uid: str, status: PipelineRunStatus) -> dict[str, Any]:
        """Equal to `to_k8s(status)`."""
        last = self._pieces.get(uid, {})
        pieces: dict[int, tuple[BaseModel, dict[str, Any]]] = {}

        def piece(model: BaseModel,
                  serialise: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
            held = last.get(id(model))
            form = held[1] if held is not None and held[0] is model else serialise(model)
            pieces[id(model)] = (model, form)
            return form

        body = status.model_dump(mode="json", by_alias=True, exclude_none=True,
                                 exclude={"pipeline_spec", "stages"})
        if status.pipeline_spec is not None:
            body[_SNAPSHOT] = piece(status.pipeline_spec, compact_snapshot)
        if status.stages is not None:
            body[_STAGES] = {name: piece(checkpoint, to_k8s)
                             for name, checkpoint in status.stages.items()}
        self._pieces[uid] = pieces
        return body

    def forget(self, uid: str) -> None:
        self._pieces.pop(uid, None)
