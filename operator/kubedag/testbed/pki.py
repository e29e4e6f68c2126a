"""Certificates for the local control plane, generated once with openssl and cached.

Generating RSA keys is the slowest part of a first start (~4 s), so the PKI lives in the cache
and every later start reuses it. It is written to a temporary folder and renamed into place, so
two starts racing on a fresh machine cannot see half a PKI.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from kubedag.testbed.versions import cache_root

PKI_LAYOUT_VERSION = "v1"
_SERVER_SANS = (
    "IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
    "DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
)


@dataclass(frozen=True)
class Pki:
    root: Path

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.root / "apiserver.crt"

    @property
    def server_key(self) -> Path:
        return self.root / "apiserver.key"

    @property
    def admin_cert(self) -> Path:
        return self.root / "admin.crt"

    @property
    def admin_key(self) -> Path:
        return self.root / "admin.key"

    @property
    def service_account_key(self) -> Path:
        return self.root / "sa.key"

    @property
    def service_account_pub(self) -> Path:
        return self.root / "sa.pub"


def ensure_pki(root: Path | None = None) -> Pki:
    root = root or cache_root() / "pki" / PKI_LAYOUT_VERSION
    if (root / "done").exists():
        return Pki(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="pki-", dir=root.parent))
    try:
        _generate(staging)
        (staging / "done").write_text("")
        try:
            staging.rename(root)
        except OSError:
            # Another start won the race; its PKI is as good as ours.
            if not (root / "done").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Pki(root)


def _openssl(cwd: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _generate(d: Path) -> None:
    _openssl(d, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
             "-out", "ca.crt", "-days", "3650", "-subj", "/CN=kubedag-testbed-ca")
    _signed(d, "apiserver", "/CN=kube-apiserver",
            f"basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
            f"extendedKeyUsage=serverAuth\nsubjectAltName={_SERVER_SANS}\n")
    _signed(d, "admin", "/O=system:masters/CN=kubernetes-admin",
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=clientAuth\n")
    _openssl(d, "genrsa", "-out", "sa.key", "2048")
    _openssl(d, "rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub")


def _signed(d: Path, name: str, subject: str, extensions: str) -> None:
    (d / f"{name}.ext").write_text(extensions)
    _openssl(d, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
             "-out", f"{name}.csr", "-subj", subject)
    _openssl(d, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", f"{name}.crt", "-days", "3650",
             "-extfile", f"{name}.ext")


def ensure_serving_cert(pki: Pki, name: str) -> Path:
    """A serving certificate for a server on the host that the API server calls (an admission
    webhook run out of cluster), signed by the test bed's CA for ``127.0.0.1`` and ``localhost``.

    Returns the folder holding it as ``tls.crt`` and ``tls.key``, the names controller-runtime's
    webhook server looks for in its certDir. Generated once per ``name`` into the cached PKI (the
    API server trusts it through the CA bundle in the webhook configuration), in a temporary
    folder renamed into place, so two starts racing cannot see a key without its certificate.
    """
    folder = pki.root / "serving" / name
    if (folder / "tls.crt").exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=folder.parent))
    try:
        shutil.copyfile(pki.ca_cert, staging / "ca.crt")
        shutil.copyfile(pki.ca_key, staging / "ca.key")
        _signed(staging, "tls", f"/CN={name}",
                "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n")
        for leftover in ("ca.key", "ca.crt", "ca.srl", "tls.csr", "tls.ext"):
            (staging / leftover).unlink(missing_ok=True)
        try:
            staging.rename(folder)
        except OSError:
            # Another start won the race; its certificate is as good as ours.
            if not (folder / "tls.crt").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder
