"""Kubeconfig files for the admin user of the local control plane."""

from __future__ import annotations

import base64
from pathlib import Path

import yaml

from kubedag.testbed.pki import Pki


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_admin_kubeconfig(path: Path, server: str, pki: Pki) -> None:
    """Embed the certificates, so the file works when copied elsewhere."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": "kubedag-testbed",
            "cluster": {"server": server, "certificate-authority-data": _b64(pki.ca_cert)},
        }],
        "users": [{
            "name": "admin",
            "user": {
                "client-certificate-data": _b64(pki.admin_cert),
                "client-key-data": _b64(pki.admin_key),
            },
        }],
        "contexts": [{
            "name": "kubedag-testbed",
            "context": {"cluster": "kubedag-testbed", "user": "admin"},
        }],
        "current-context": "kubedag-testbed",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
