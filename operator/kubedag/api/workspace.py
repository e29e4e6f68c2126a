"""A run's workspace: one volume shared by all its stage pods, mounted at /workspace.

As in Tekton (`workspaces[].volumeClaimTemplate` / `persistentVolumeClaim`) and Argo
(`volumeClaimTemplates`): either a PersistentVolumeClaim created for the run from a template,
owned by the run and deleted with it, or an existing claim the run only mounts.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import ConfigDict, Field, model_validator

from kubedag.api._base import (
    DNS1123_SUBDOMAIN,
    MAX_SHORT_TEXT,
    STORAGE_QUANTITY,
    ApiModel,
    cel_rule,
)

_ACCESS_MODES_DOC = (
    "`ReadWriteOnce`: the volume attaches to one node, so every pod of the run (fan-out pods "
    "included) must be scheduled onto that node; the scheduler does this by itself through "
    "the volume's node affinity (local provisioners such as local-path) or its attach limits, "
    "which also means the run's stages can only use that node's CPUs and GPUs. "
    "`ReadWriteMany`: pods on any node share it, which needs a storage class that supports it "
    "(NFS, CephFS, EFS, Filestore, Azure Files...); a class without RWX support leaves the "
    "claim Pending. `ReadWriteOncePod`: one pod at a time, so stages cannot run in parallel "
    "on it."
)


class AccessMode(StrEnum):
    """How a volume may be mounted (core/v1 PersistentVolumeAccessMode)."""

    READ_WRITE_ONCE = "ReadWriteOnce"
    READ_WRITE_MANY = "ReadWriteMany"
    READ_ONLY_MANY = "ReadOnlyMany"
    READ_WRITE_ONCE_POD = "ReadWriteOncePod"


class StorageRequests(ApiModel):
    """What the claim requests."""

    storage: str = Field(
        max_length=64,
        pattern=STORAGE_QUANTITY,
        description="Size of the volume, a Kubernetes quantity such as `1Gi`, `500Mi` or "
        "`10G` (no sign, no `m` suffix).",
    )


class StorageResources(ApiModel):
    """The claim's resources (core/v1 VolumeResourceRequirements, requests only)."""

    requests: StorageRequests = Field(description="Minimum resources the volume must have.")


class ClaimSpec(ApiModel):
    """The spec of the PersistentVolumeClaim made for the run (a subset of core/v1's)."""

    access_modes: list[AccessMode] = Field(
        default_factory=lambda: [AccessMode.READ_WRITE_ONCE],
        min_length=1,
        max_length=4,
        description="Access modes of the volume (default `[ReadWriteOnce]`). "
        + _ACCESS_MODES_DOC,
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    storage_class_name: str | None = Field(
        default=None,
        max_length=253,
        description="StorageClass of the volume; unset: the cluster's default class. The "
        "class must support the access modes asked for.",
    )
    resources: StorageResources = Field(
        description="`requests.storage`: the size of the volume."
    )


class ClaimMetadata(ApiModel):
    """Labels and annotations added to the created PersistentVolumeClaim."""

    labels: dict[str, str] | None = Field(
        default=None, description="Extra labels of the claim (kubedag adds its own)."
    )
    annotations: dict[str, str] | None = Field(
        default=None, description="Annotations of the claim (e.g. for a backup tool)."
    )


class VolumeClaimTemplate(ApiModel):
    """A PersistentVolumeClaim created for each run, named `<run>-workspace`."""

    metadata: ClaimMetadata | None = Field(
        default=None, description="Labels and annotations of the created claim."
    )
    spec: ClaimSpec = Field(description="Access modes, storage class and size of the volume.")


class ClaimReference(ApiModel):
    """An existing PersistentVolumeClaim in the run's namespace."""

    claim_name: str = Field(
        min_length=1,
        max_length=253,
        pattern=DNS1123_SUBDOMAIN,
        description="Name of the PersistentVolumeClaim, in the run's namespace.",
    )


class Workspace(ApiModel):
    """The volume mounted at /workspace in every stage pod of the run."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel_rule(
                    "has(self.volumeClaimTemplate) != has(self.persistentVolumeClaim)",
                    "set exactly one of volumeClaimTemplate or persistentVolumeClaim",
                ),
            ]
        }
    )

    volume_claim_template: VolumeClaimTemplate | None = Field(
        default=None,
        description="Create a PersistentVolumeClaim for the run, named `<run>-workspace`, "
        "before its first stage starts. It is owned by the run (ownerReference), so deleting "
        "the run deletes the claim and its volume (as the storage class's reclaim policy "
        "says). A run resumed with `resumeFrom` gets a new, empty volume: use "
        "persistentVolumeClaim to keep files across runs. Exactly one of volumeClaimTemplate "
        "or persistentVolumeClaim. " + _ACCESS_MODES_DOC,
    )
    persistent_volume_claim: ClaimReference | None = Field(
        default=None,
        description="Mount an existing PersistentVolumeClaim; kubedag never creates or deletes "
        "it. Runs sharing one claim see each other's files. Exactly one of "
        "volumeClaimTemplate or persistentVolumeClaim.",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Workspace:
        if (self.volume_claim_template is None) == (self.persistent_volume_claim is None):
            raise ValueError("set exactly one of volumeClaimTemplate or persistentVolumeClaim")
        return self


class WorkspaceStatus(ApiModel):
    """The claim the run's pods mount."""

    claim_name: str = Field(
        max_length=MAX_SHORT_TEXT,
        description="Name of the PersistentVolumeClaim mounted at /workspace (created for "
        "the run from its volumeClaimTemplate, or the one named in persistentVolumeClaim).",
    )
    created: bool = Field(
        default=False,
        description="True when kubedag created the claim for this run (and the run owns it).",
    )
