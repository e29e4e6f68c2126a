"""The workspace API: exactly one source, storage quantities, and what the CRD says."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import ValidationError

from kubedag.api import PipelineRunSpec, Workspace
from kubedag.api.crd import KINDS, crd

TEMPLATE = {"spec": {"resources": {"requests": {"storage": "1Gi"}}}}


def run_schema() -> dict[str, Any]:
    [kind] = [k for k in KINDS if k.kind == "PipelineRun"]
    root: dict[str, Any] = crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return root


@pytest.mark.parametrize("body", [
    {},
    {"volumeClaimTemplate": TEMPLATE, "persistentVolumeClaim": {"claimName": "data"}},
])
def test_exactly_one_of_template_or_claim(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="exactly one of volumeClaimTemplate or "
                                              "persistentVolumeClaim"):
        Workspace.model_validate(body)


@pytest.mark.parametrize(("storage", "valid"), [
    ("1Gi", True), ("500Mi", True), ("10G", True), ("1.5Ti", True), ("1e9", True),
    ("1 GB", False), ("-1Gi", False), ("100m", False), ("lots", False), ("", False),
])
def test_storage_must_be_a_size(storage: str, valid: bool) -> None:
    body = {"volumeClaimTemplate": {"spec": {"resources": {"requests": {"storage": storage}}}}}
    pattern = run_schema()["properties"]["spec"]["properties"]["workspace"]["properties"][
        "volumeClaimTemplate"]["properties"]["spec"]["properties"]["resources"]["properties"][
        "requests"]["properties"]["storage"]["pattern"]
    assert bool(re.match(pattern, storage)) == valid
    if valid:
        Workspace.model_validate(body)
    else:
        with pytest.raises(ValidationError):
            Workspace.model_validate(body)


def test_the_crd_checks_exactly_one_at_apply_time_and_documents_access_modes() -> None:
    workspace = run_schema()["properties"]["spec"]["properties"]["workspace"]
    [rule] = workspace["x-kubernetes-validations"]
    assert rule["rule"] == "has(self.volumeClaimTemplate) != has(self.persistentVolumeClaim)"
    modes = workspace["properties"]["volumeClaimTemplate"]["properties"]["spec"]["properties"][
        "accessModes"]
    assert modes["items"]["enum"] == ["ReadWriteOnce", "ReadWriteMany", "ReadOnlyMany",
                                      "ReadWriteOncePod"]
    assert "one node" in modes["description"] and "NFS" in modes["description"]
    claim = workspace["properties"]["persistentVolumeClaim"]["properties"]["claimName"]
    assert claim["pattern"].startswith("^[a-z0-9]")


def test_a_run_and_a_pipeline_default_accept_a_workspace() -> None:
    spec = PipelineRunSpec.model_validate({
        "pipelineSpec": {"stages": [{"name": "a", "image": "x"}],
                         "defaults": {"workspace": {"volumeClaimTemplate": TEMPLATE}}},
        "workspace": {"persistentVolumeClaim": {"claimName": "data"}}})
    assert spec.workspace is not None and spec.workspace.persistent_volume_claim is not None
    assert spec.pipeline_spec is not None and spec.pipeline_spec.defaults is not None
    assert spec.pipeline_spec.defaults.workspace is not None
