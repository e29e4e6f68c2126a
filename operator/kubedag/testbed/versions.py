"""The pinned component versions and where their binaries are cached.

``versions.env`` is the one file that pins them; the shell build script sources it too, so the
runner and the builder can never disagree about which folder holds the binaries.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

VERSIONS_FILE = Path(__file__).with_name("versions.env")


def cache_root() -> Path:
    return Path(os.environ.get("KUBEDAG_CACHE", Path.home() / ".cache" / "kubedag"))


@dataclass(frozen=True)
class Versions:
    kubernetes: str
    etcd: str
    kwok: str
    helm: str
    # Kept in its own subfolder of bin_dir (kueue-<version>), so it is not in the folder's name.
    kueue: str
    # Argo Workflows' controller, for `make bench-argo` only (bin_dir/argo-workflows-<version>).
    argo_workflows: str

    @classmethod
    def pinned(cls) -> Versions:
        values: dict[str, str] = {}
        for raw in VERSIONS_FILE.read_text().splitlines():
            line = raw.strip()
            if line and not line.startswith("#") and "=" in line:
                key, value = line.split("=", 1)
                values[key.strip()] = value.strip()
        return cls(
            kubernetes=values["K8S_VERSION"],
            etcd=values["ETCD_VERSION"],
            kwok=values["KWOK_VERSION"],
            helm=values["HELM_VERSION"],
            kueue=values["KUEUE_VERSION"],
            argo_workflows=values["ARGO_VERSION"],
        )

    def bin_dir(self) -> Path:
        # Must match the folder name in hack/build-cluster-bin.sh.
        name = f"{self.kubernetes}-etcd{self.etcd}-kwok{self.kwok}-helm{self.helm}"
        return cache_root() / "bin" / name


BINARIES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kubelet",
    "kwok",
    "helm",
    "local-path-provisioner",
    "prometheus",
    "promtool",
)


def require_binaries(bin_dir: Path) -> None:
    """Fail with the command that fixes it, rather than a FileNotFoundError deep in a start-up."""
    missing = [name for name in BINARIES if not (bin_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"control-plane binaries missing from {bin_dir}: {', '.join(missing)}. "
            "Run `make cluster-bin` (builds them from the Go module proxy, ~7 min cold)."
        )
