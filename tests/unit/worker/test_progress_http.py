"""pod_sink without a Kubernetes client: a JSON merge-patch over HTTP, credentials found alone.

A local HTTP server stands in for the API server (the TLS path against a real one is
tests/integration/test_worker_progress.py).
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubedag import contract
from kubedag.testbed.pki import ensure_pki
from kubedag.worker.progress import (
    ApiAccess,
    ApiError,
    ProgressReporter,
    Update,
    log_sink,
    pod_sink,
    sink_from_env,
)


class _FakeApi(ThreadingHTTPServer):
    status = 200
    requests: list[dict[str, Any]]


class _Handler(BaseHTTPRequestHandler):
    server: _FakeApi

    def do_PATCH(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests.append({
            "path": self.path, "type": self.headers["Content-Type"],
            "auth": self.headers.get("Authorization"), "body": json.loads(body),
        })
        status = self.server.status
        payload = json.dumps({"kind": "Status", "message": f"pods is {status}"}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def api() -> Iterator[_FakeApi]:
    server = _FakeApi(("127.0.0.1", 0), _Handler)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _kubeconfig(tmp: Path, server: str, user: dict[str, Any]) -> Path:
    path = tmp / "config"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "worker",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "other", "context": {"cluster": "missing", "user": "u"}},
                     {"name": "worker", "context": {"cluster": "c", "user": "u"}}],
    }))
    return path


def _url(api: _FakeApi) -> str:
    host, port = api.server_address[:2]
    return f"http://{host!s}:{port}"


def test_merge_patch_of_the_annotation_with_the_kubeconfig_token(
    api: _FakeApi, tmp_path: Path
) -> None:
    config = _kubeconfig(tmp_path, _url(api), {"token": "abc"})
    send = pod_sink("ns-1", "pod-1", {"KUBECONFIG": str(config)})
    update = Update(0.5, "half", "2026-01-01T00:00:00.000Z")
    send(update)
    [request] = api.requests
    assert request["path"] == "/api/v1/namespaces/ns-1/pods/pod-1"
    assert request["type"] == "application/merge-patch+json"
    assert request["auth"] == "Bearer abc"
    assert request["body"] == {
        "metadata": {"annotations": {contract.ANNOTATION_PROGRESS: update.to_json()}}
    }


def test_token_file_is_read_per_request(api: _FakeApi, tmp_path: Path) -> None:
    (tmp_path / "token").write_text("first\n")
    config = _kubeconfig(tmp_path, _url(api), {"tokenFile": "token"})
    send = pod_sink("ns", "pod", {"KUBECONFIG": str(config)})
    send(Update(0.1, "", "t"))
    (tmp_path / "token").write_text("rotated\n")
    send(Update(0.2, "", "t"))
    assert [r["auth"] for r in api.requests] == ["Bearer first", "Bearer rotated"]


def test_an_error_status_raises_with_its_reason(api: _FakeApi, tmp_path: Path) -> None:
    api.status = 403
    send = pod_sink("ns", "pod", {"KUBECONFIG": str(_kubeconfig(tmp_path, _url(api), {}))})
    with pytest.raises(ApiError, match=r"HTTP 403 Forbidden: pods is 403"):
        send(Update(0.1, "", "t"))


def test_a_failing_api_never_fails_the_reporter(api: _FakeApi, tmp_path: Path) -> None:
    api.status = 500
    send = pod_sink("ns", "pod", {"KUBECONFIG": str(_kubeconfig(tmp_path, _url(api), {}))})
    reporter = ProgressReporter(send, interval=0.01)
    reporter.report(0.3, "x")
    reporter.close((1.0, "done"))
    assert reporter.failed >= 1 and reporter.sent == 0


def test_unreachable_api_times_out_as_an_error(tmp_path: Path) -> None:
    send = pod_sink("ns", "pod", {"KUBECONFIG": str(
        _kubeconfig(tmp_path, "http://127.0.0.1:9", {}))})  # discard port: refused
    with pytest.raises(OSError):
        send(Update(0.1, "", "t"))


def test_in_cluster_uses_the_service_account(tmp_path: Path) -> None:
    bundle = Path(ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt")
    assert bundle.is_file(), "a CA bundle stands in for the service account's ca.crt"
    (tmp_path / "token").write_text("sa-token")
    (tmp_path / "ca.crt").write_bytes(bundle.read_bytes())
    access = ApiAccess.in_cluster(
        {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "6443"}, tmp_path
    )
    assert access.server == "https://[fd00::1]:6443"
    assert access.token_file == tmp_path / "token"
    assert access.ssl_context is not None and access.ssl_context.check_hostname


def test_in_cluster_without_a_token_falls_back_to_logging(tmp_path: Path) -> None:
    env = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", contract.ENV_NAMESPACE: "ns",
           contract.ENV_POD_NAME: "pod"}
    with pytest.raises(FileNotFoundError):
        ApiAccess.in_cluster(env, tmp_path)
    assert sink_from_env({contract.ENV_NAMESPACE: "ns", contract.ENV_POD_NAME: "pod",
                          "KUBECONFIG": str(tmp_path / "missing")}) is log_sink


def test_kubeconfig_insecure_and_first_of_several_files(tmp_path: Path) -> None:
    config = _kubeconfig(tmp_path, "https://127.0.0.1:6443", {"token": "t"})
    data = yaml.safe_load(config.read_text())
    data["clusters"][0]["cluster"]["insecure-skip-tls-verify"] = True
    config.write_text(yaml.safe_dump(data))
    access = ApiAccess.from_kubeconfig({"KUBECONFIG": f"{config}:/nonexistent"})
    assert access.server == "https://127.0.0.1:6443"
    assert access.ssl_context is not None and access.ssl_context.verify_mode == ssl.CERT_NONE


@pytest.mark.parametrize("inline", [True, False], ids=["data", "files"])
def test_kubeconfig_ca_and_client_certificate_load(tmp_path: Path, inline: bool) -> None:
    """The test bed's PKI (openssl) gives a real CA and client certificate to load."""
    pki = ensure_pki(tmp_path / "pki")
    if inline:
        user = {"client-certificate-data": _b64(pki.admin_cert),
                "client-key-data": _b64(pki.admin_key)}
        cluster = {"certificate-authority-data": _b64(pki.ca_cert)}
    else:
        user = {"client-certificate": str(pki.admin_cert), "client-key": str(pki.admin_key)}
        cluster = {"certificate-authority": str(pki.ca_cert)}
    config = _kubeconfig(tmp_path, "https://127.0.0.1:6443", user)
    data = yaml.safe_load(config.read_text())
    data["clusters"][0]["cluster"].update(cluster)
    config.write_text(yaml.safe_dump(data))
    access = ApiAccess.from_kubeconfig({"KUBECONFIG": str(config)})
    assert access.ssl_context is not None
    assert access.ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert access.ssl_context.get_ca_certs()  # the kubeconfig's CA, loaded
    assert access.token is None


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()
