"""The worker's own HTTP/1.1 client: TLS as in a pod, and what an API server may answer.

An HTTPS stand-in (the test bed's PKI) checks the in-cluster path end to end; a raw socket
server replays exact bytes for the cases a friendly server would never produce.
"""

from __future__ import annotations

import calendar
import contextlib
import gc
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from kubedag import contract
from kubedag.testbed.pki import Pki
from kubedag.worker import progress
from kubedag.worker.progress import ApiAccess, ApiError, Update, log_sink, pod_sink, sink_from_env
from tests.unit.worker.tls_api import TlsApi, serve_tls, service_account

UPDATE = Update(0.5, "half", "2026-01-01T00:00:00.000Z")


def _in_cluster_env(port: int, host: str = "127.0.0.1") -> dict[str, str]:
    return {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": str(port),
            contract.ENV_NAMESPACE: "ns-1", contract.ENV_POD_NAME: "pod-1"}


def _kubeconfig(tmp: Path, server: str, cluster: dict[str, object] | None = None,
                user: dict[str, object] | None = None) -> dict[str, str]:
    path = tmp / "config"
    path.write_text(yaml.safe_dump({
        "current-context": "w",
        "clusters": [{"name": "c", "cluster": {"server": server, **(cluster or {})}}],
        "users": [{"name": "u", "user": user or {"token": "t"}}],
        "contexts": [{"name": "w", "context": {"cluster": "c", "user": "u"}}],
    }))
    return {"KUBECONFIG": str(path)}


# --- TLS, as in a pod ---------------------------------------------------------------------------


def test_in_cluster_patch_over_tls(
    tls_api: TlsApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service account's token and CA; the certificate is checked against the IP address."""
    account = service_account(tmp_path / "sa", tls_api.pki.ca_cert)
    monkeypatch.setattr(progress, "SERVICE_ACCOUNT", account)
    send = sink_from_env(_in_cluster_env(tls_api.port))
    assert send is not log_sink
    send(UPDATE)
    [request] = tls_api.requests
    assert request["path"] == "/api/v1/namespaces/ns-1/pods/pod-1"
    assert request["headers"]["Authorization"] == "Bearer sa-token"
    assert request["headers"]["Content-Type"] == "application/merge-patch+json"
    assert request["headers"]["Host"] == f"127.0.0.1:{tls_api.port}"
    assert request["body"] == {
        "metadata": {"annotations": {contract.ANNOTATION_PROGRESS: UPDATE.to_json()}}
    }


def test_the_tls_context_is_built_on_the_first_patch(tls_api: TlsApi, tmp_path: Path) -> None:
    account = service_account(tmp_path / "sa", tls_api.pki.ca_cert)
    access = ApiAccess.in_cluster(_in_cluster_env(tls_api.port), account)
    assert access._ssl_context is None  # nothing of OpenSSL yet
    access.merge_patch("/x", {})
    context = access._ssl_context
    assert context is not None and context.check_hostname
    access.merge_patch("/x", {})
    assert access._ssl_context is context  # kept
    assert len(tls_api.requests) == 2


def test_a_missing_service_account_ca_falls_back_to_logging(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("t")
    with pytest.raises(FileNotFoundError, match=r"ca\.crt"):
        ApiAccess.in_cluster(_in_cluster_env(443), tmp_path)


def test_tls_by_host_name_with_a_kubeconfig_ca(tls_api: TlsApi, tmp_path: Path) -> None:
    env = _kubeconfig(tmp_path, f"https://localhost:{tls_api.port}",
                      {"certificate-authority": str(tls_api.pki.ca_cert)})
    pod_sink("ns", "pod", env)(UPDATE)
    assert tls_api.requests[0]["headers"]["Authorization"] == "Bearer t"


def test_tls_errors_answer_an_error_status_too(tls_api: TlsApi, tmp_path: Path) -> None:
    tls_api.status, tls_api.chunked = 403, True
    account = service_account(tmp_path / "sa", tls_api.pki.ca_cert)
    access = ApiAccess.in_cluster(_in_cluster_env(tls_api.port), account)
    with pytest.raises(ApiError, match=r"^HTTP 403 Forbidden: answered 403$"):
        access.merge_patch("/x", {})


def test_an_unknown_ca_fails_the_handshake(
    tls_api: TlsApi, worker_pki: Pki, tmp_path: Path
) -> None:
    other = tmp_path / "other-ca.crt"
    other.write_bytes(worker_pki.admin_cert.read_bytes())  # a certificate, but not the CA
    access = ApiAccess.in_cluster(_in_cluster_env(tls_api.port),
                                  service_account(tmp_path / "sa", other))
    with pytest.raises(ssl.SSLCertVerificationError):
        access.merge_patch("/x", {})
    gc.collect()  # an unclosed socket would warn now (warnings are errors)
    assert not tls_api.requests


def test_a_certificate_for_another_address_fails(worker_pki: Pki, tmp_path: Path) -> None:
    # Linux routes all of 127.0.0.0/8 to loopback; 127.0.0.2 is not among the certificate's SANs.
    server = serve_tls(worker_pki, host="127.0.0.2")
    try:
        access = ApiAccess.in_cluster(_in_cluster_env(server.port, "127.0.0.2"),
                                      service_account(tmp_path / "sa", worker_pki.ca_cert))
        with pytest.raises(ssl.SSLCertVerificationError, match="IP address mismatch"):
            access.merge_patch("/x", {})
    finally:
        server.shutdown()
        server.server_close()


# --- exact bytes ----------------------------------------------------------------------------


class _Raw:
    """Accepts connections one at a time, keeps each request's bytes and answers with
    ``answer(connection)``."""

    def __init__(self, answer: Callable[[socket.socket], None]) -> None:
        self.answer = answer
        self.requests: list[bytes] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)  # to notice ``close``: it does not wake accept()
        self.port = self.listener.getsockname()[1]
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(10)
                self.requests.append(_read_request(connection))
                with contextlib.suppress(OSError):  # the client gave up first
                    self.answer(connection)

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(5)
        self.listener.close()


def _read_request(connection: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += connection.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        body += connection.recv(65536)
    return head + b"\r\n\r\n" + body


@pytest.fixture
def raw() -> Iterator[Callable[..., _Raw]]:
    servers: list[_Raw] = []

    def start(*pieces: bytes, delay: float = 0.0, hang: bool = False) -> _Raw:
        def answer(connection: socket.socket) -> None:
            for piece in pieces:
                connection.sendall(piece)
                time.sleep(delay)
            if hang:
                time.sleep(1)

        servers.append(_Raw(answer))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def _access(server: _Raw, prefix: str = "", token: str = "t") -> ApiAccess:
    return ApiAccess(f"http://127.0.0.1:{server.port}{prefix}", token=token)


def _json(status: str, message: str, extra: bytes = b"") -> bytes:
    body = b'{"kind":"Status","message":"%s"}' % message.encode()
    return (b"HTTP/1.1 %s\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n%s"
            % (status.encode(), extra, len(body), body))


def test_the_request_is_one_merge_patch_on_a_closed_connection(raw: Callable[..., _Raw]) -> None:
    server = raw(_json("200 OK", "fine"))
    _access(server, "/proxy/k8s").merge_patch("/api/v1/namespaces/n/pods/p", {"a": "é"})
    [request] = server.requests
    head, _, body = request.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "PATCH /proxy/k8s/api/v1/namespaces/n/pods/p HTTP/1.1"
    assert f"Host: 127.0.0.1:{server.port}" in lines
    assert "Content-Type: application/merge-patch+json" in lines
    assert "Connection: close" in lines
    assert "Authorization: Bearer t" in lines
    assert f"Content-Length: {len(body)}" in lines
    assert body == b'{"a": "\\u00e9"}'


def test_a_chunked_error_body_gives_its_message(raw: Callable[..., _Raw]) -> None:
    status = b'{"kind":"Status","message":"the patch is invalid"}'
    server = raw(
        b"HTTP/1.1 422 Unprocessable Entity\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"%x\r\n%s\r\n" % (7, status[:7]), b"%x;ext=1\r\n%s\r\n" % (len(status) - 7, status[7:]),
        b"0\r\n\r\n", delay=0.02,
    )
    with pytest.raises(ApiError, match=r"^HTTP 422 Unprocessable Entity: the patch is invalid$"):
        _access(server).merge_patch("/x", {})


def test_an_interim_answer_is_skipped(raw: Callable[..., _Raw]) -> None:
    server = raw(b"HTTP/1.1 100 Continue\r\n\r\n", _json("403 Forbidden", "no"))
    with pytest.raises(ApiError, match=r"^HTTP 403 Forbidden: no$"):
        _access(server).merge_patch("/x", {})


def test_a_status_without_a_reason(raw: Callable[..., _Raw]) -> None:
    server = raw(_json("500", "oops"))
    with pytest.raises(ApiError, match=r"^HTTP 500: oops$"):
        _access(server).merge_patch("/x", {})


def test_a_long_error_body_that_is_not_json_is_cut(raw: Callable[..., _Raw]) -> None:
    body = b"x" * 10_000
    server = raw(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: %d\r\n\r\n" % len(body), body)
    with pytest.raises(ApiError) as caught:
        _access(server).merge_patch("/x", {})
    assert str(caught.value) == "HTTP 502 Bad Gateway: " + "x" * progress.MAX_DETAIL


def test_a_large_pod_in_pieces_is_a_success(raw: Callable[..., _Raw]) -> None:
    pod = b'{"kind":"Pod","metadata":{"annotations":{"a":"%s"}}}' % (b"p" * 300_000)
    chunks = [pod[i : i + 70_000] for i in range(0, len(pod), 70_000)]
    server = raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                 *(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks), b"0\r\n\r\n")
    _access(server).merge_patch("/x", {})


def test_a_success_cut_short_is_still_a_success(raw: Callable[..., _Raw]) -> None:
    server = raw(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n{\"kind\"")
    _access(server).merge_patch("/x", {})


def test_not_http_is_an_api_error(raw: Callable[..., _Raw]) -> None:
    server = raw(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
    with pytest.raises(ApiError, match="not an HTTP response"):
        _access(server).merge_patch("/x", {})


def test_a_close_without_an_answer_is_a_connection_error(raw: Callable[..., _Raw]) -> None:
    server = raw()
    with pytest.raises(ConnectionError):
        _access(server).merge_patch("/x", {})


@pytest.mark.parametrize("drip", [False, True], ids=["silent", "byte-by-byte"])
def test_a_slow_server_times_out_within_the_patch_timeout(
    raw: Callable[..., _Raw], monkeypatch: pytest.MonkeyPatch, drip: bool
) -> None:
    """The timeout bounds the whole patch, not each read: a server sending a byte at a time
    cannot hold the final flush."""
    monkeypatch.setattr(progress, "PATCH_TIMEOUT", 0.5)
    pieces = [bytes([b]) for b in b"HTTP/1.1 200 OK\r\nX: " + b"y" * 100] if drip else []
    server = raw(*pieces, delay=0.05, hang=True)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        _access(server).merge_patch("/x", {})
    assert time.monotonic() - started < 1.5


def test_a_token_with_a_line_break_is_refused(raw: Callable[..., _Raw]) -> None:
    server = raw(_json("200 OK", "fine"))
    with pytest.raises(ValueError, match="Authorization"):
        _access(server, token="t\r\nX-Injected: 1").merge_patch("/x", {})
    assert not server.requests


def test_api_server_urls() -> None:
    parse = progress._Endpoint.parse
    assert parse("https://[fd00::1]:6443") == (True, "fd00::1", 6443, "[fd00::1]:6443", "")
    assert parse("https://[fd00::1]") == (True, "fd00::1", 443, "[fd00::1]", "")
    assert parse("http://api") == (False, "api", 80, "api", "")
    assert parse("https://rancher:8443/k8s/clusters/c-1/") == (
        True, "rancher", 8443, "rancher:8443", "/k8s/clusters/c-1")
    for bad in ("ftp://x", "https://x:port", "api:6443", "https://"):
        with pytest.raises(ValueError):
            parse(bad)


def test_update_times_are_utc_milliseconds() -> None:
    before = time.time()
    stamp = progress._now()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", stamp)
    parsed = calendar.timegm(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S"))
    assert before - 1 <= parsed + int(stamp[20:23]) / 1000 <= time.time()
