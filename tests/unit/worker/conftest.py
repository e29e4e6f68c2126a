"""Fixtures: the test bed's PKI (openssl, once a session) and an HTTPS stand-in API server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kubedag.testbed.pki import Pki, ensure_pki
from tests.unit.worker.tls_api import TlsApi, serve_tls


@pytest.fixture(scope="session")
def worker_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA and a server certificate for 127.0.0.1 and localhost (~4 s of openssl, once)."""
    return ensure_pki(tmp_path_factory.mktemp("worker-pki") / "pki")


@pytest.fixture
def tls_api(worker_pki: Pki) -> Iterator[TlsApi]:
    server = serve_tls(worker_pki)
    yield server
    server.shutdown()
    server.server_close()
