"""The kubedag-Jobs floor creates the Jobs kubedag's operator would, not look-alikes."""

from __future__ import annotations

from bench.floor import FLOOR_RUN_UID_LABEL, POD_OWNER_KIND, kubedag_job_manifest

from kubedag.api import PipelineSpec
from kubedag.core.jobspec import JobSettings, RunIdentity, build_job
from kubedag.core.observe import LABEL_RUN_UID

PIPELINE = PipelineSpec.model_validate({
    "stages": [{"name": "a", "image": "busybox"},
               {"name": "b", "image": "busybox", "dependsOn": ["a"]}],
    "defaults": {"nodeSelector": {"type": "kwok"}}})


def test_the_floor_job_is_kubedags_job_but_for_its_owner_and_the_run_uid_label() -> None:
    owner = {"name": "r1", "uid": "u-1"}
    floor = kubedag_job_manifest("r1", PIPELINE.stages[1], owner, "ns", PIPELINE)
    operator = build_job(run=RunIdentity("r1", "ns", "u-1", "r1"), pipeline=PIPELINE,
                         stage=PIPELINE.stages[1], attempt=1, params={}, outputs={"a": None},
                         settings=JobSettings())

    assert floor["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": POD_OWNER_KIND, "name": "r1", "uid": "u-1",
         "controller": True, "blockOwnerDeletion": True}]
    assert floor["spec"]["template"]["spec"] == operator["spec"]["template"]["spec"]
    for path in (("metadata",), ("spec", "template", "metadata")):
        floor_meta, operator_meta = floor, operator
        for key in path:
            floor_meta, operator_meta = floor_meta[key], operator_meta[key]
        labels = dict(floor_meta["labels"])
        # The operator's watches select on the run-uid label: the floor's Jobs stay out of them.
        assert LABEL_RUN_UID not in labels
        assert labels.pop(FLOOR_RUN_UID_LABEL) == "u-1"
        assert labels.pop("bench") == "floor"
        assert labels == {k: v for k, v in operator_meta["labels"].items() if k != LABEL_RUN_UID}
        assert len(FLOOR_RUN_UID_LABEL) == len(LABEL_RUN_UID)
