"""Progress: the latest fraction is published on the worker's own Pod, off the caller's thread.

Patching its own Pod (not the PipelineRun) keeps the worker's RBAC to its namespace's pods, and
the operator already watches those pods. A processor may report progress in a tight loop, so
updates are coalesced: a background thread sends at most one patch per interval, always the
latest value, and dropped intermediate values cost nothing. A slow or failing API server never
blocks or fails the stage: progress is advisory, the termination message is what counts.

The worker's own memory is reported as part of the stage's, so the patch is sent by a few lines
of HTTP/1.1 over ``socket`` and ``ssl`` rather than urllib.request (http.client and email.*,
~1.5 MiB), and both are imported only when the first patch goes out: loading OpenSSL and building
a TLS context costs ~5.5 MiB of RSS, which a stage that reports no progress before it ends never
pays while it runs.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import quote  # already loaded by pathlib

from kubedag import contract

if TYPE_CHECKING:
    import socket
    import ssl

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 2.0  # seconds between patches; the operator folds progress in, no need to rush
MAX_MESSAGE = 256  # characters; an annotation is for a status line, not a log
PATCH_TIMEOUT = 5.0  # seconds for a whole patch; a hung API call must not hold the final flush
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
MAX_HEAD = 64 * 1024  # bytes of status line and headers before the answer is not HTTP
MAX_BODY = 1024 * 1024  # bytes of a response body read at most (a Pod is a few KiB)
MAX_DETAIL = 4096  # characters of an error body kept for the log


class Update(NamedTuple):
    fraction: float
    message: str
    time: str

    def to_json(self) -> str:
        return json.dumps(
            {"fraction": round(self.fraction, 4), "message": self.message, "time": self.time},
            separators=(",", ":"),
        )


Sink = Callable[[Update], None]


def log_sink(update: Update) -> None:
    """Where progress goes on a local run, without a Pod to patch."""
    log.info("progress %.0f%% %s", update.fraction * 100, update.message)


def pod_sink(namespace: str, pod: str, env: Mapping[str, str] | None = None) -> Sink:
    """A sink that merges the progress annotation into the named Pod.

    A plain HTTPS JSON merge-patch, so the worker image needs no Kubernetes client. In a pod the
    service account's token and CA are used; elsewhere the KUBECONFIG file (tests run the worker
    against a real control plane that way). Raises if neither gives credentials.
    """
    api = ApiAccess.from_env(os.environ if env is None else env)
    path = f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(pod, safe='')}"

    def send(update: Update) -> None:
        body = {"metadata": {"annotations": {contract.ANNOTATION_PROGRESS: update.to_json()}}}
        api.merge_patch(path, body)
        log.debug("progress patch sent to pod %s/%s: %s", namespace, pod, update.to_json())

    return send


class ApiError(Exception):
    """The API server answered with an error status, or with something that is not HTTP."""


class ApiAccess:
    """Where the API server is and how to authenticate to it: just enough for a merge-patch.

    ``tls`` builds the TLS context on first use (then kept): in a pod that is the first patch.
    """

    def __init__(
        self,
        server: str,
        ssl_context: ssl.SSLContext | None = None,
        token: str | None = None,
        token_file: Path | None = None,  # re-read per request: the kubelet rotates tokens
        *,
        tls: Callable[[], ssl.SSLContext] | None = None,
    ) -> None:
        self.server = server
        self.token = token
        self.token_file = token_file
        self._ssl_context = ssl_context
        self._tls = tls
        self._endpoint = _Endpoint.parse(server)

    def __repr__(self) -> str:  # no token in logs
        return f"ApiAccess(server={self.server!r}, token_file={self.token_file!r})"

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context (built now if it is still to be built); None for a plain-HTTP server."""
        if self._ssl_context is None and self._tls is not None:
            self._ssl_context = self._tls()  # a race of two builds is harmless: either is right
        return self._ssl_context

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ApiAccess:
        if env.get("KUBERNETES_SERVICE_HOST"):
            return cls.in_cluster(env)
        return cls.from_kubeconfig(env)

    @classmethod
    def in_cluster(cls, env: Mapping[str, str], account: Path | None = None) -> ApiAccess:
        """The pod's service account (``account`` defaults to SERVICE_ACCOUNT, read now)."""
        account = SERVICE_ACCOUNT if account is None else account
        host, port = env["KUBERNETES_SERVICE_HOST"], env.get("KUBERNETES_SERVICE_PORT", "443")
        if ":" in host:  # an IPv6 address
            host = f"[{host}]"
        token_file, ca_file = account / "token", account / "ca.crt"
        for needed in (token_file, ca_file):
            if not needed.is_file():
                raise FileNotFoundError(f"no service account {needed.name} at {needed}")
        return cls(f"https://{host}:{port}", token_file=token_file,
                   tls=lambda: _default_context(cafile=str(ca_file)))

    @classmethod
    def from_kubeconfig(cls, env: Mapping[str, str]) -> ApiAccess:
        """The current context of $KUBECONFIG (its first file) or ~/.kube/config.

        Supports what a test bed or a `kubectl create token` kubeconfig holds: a server with
        certificate-authority(-data) or insecure-skip-tls-verify, and a user with a token,
        tokenFile and/or client-certificate(-data) + client-key(-data). PyYAML is imported only
        here: it is not a worker dependency, and a pod never reads a kubeconfig.
        """
        import base64  # noqa: PLC0415 - outside a pod only, like yaml
        import ssl  # noqa: PLC0415 - (a kubeconfig's TLS context is built at once)

        import yaml  # noqa: PLC0415 - outside a pod only; not in the worker image

        paths = [p for p in env.get("KUBECONFIG", "").split(os.pathsep) if p]
        path = Path(paths[0] if paths else Path.home() / ".kube" / "config")
        config = yaml.safe_load(path.read_text()) or {}
        current = config.get("current-context")
        context = _named(config, "contexts", current, "context") if current else (
            (config.get("contexts") or [{}])[0].get("context") or {}
        )
        cluster = _named(config, "clusters", context.get("cluster"), "cluster")
        user = _named(config, "users", context.get("user"), "user") if context.get("user") else {}
        server = str(cluster["server"]).rstrip("/")
        base = path.parent
        ssl_context: ssl.SSLContext | None = None
        if server.startswith("https:"):
            if cluster.get("insecure-skip-tls-verify"):
                ssl_context = _default_context()
                ssl_context.check_hostname = False
                ssl_context.verify_mode = ssl.CERT_NONE
            elif "certificate-authority-data" in cluster:
                ssl_context = _default_context(
                    cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
                )
            elif "certificate-authority" in cluster:
                ssl_context = _default_context(cafile=str(base / cluster["certificate-authority"]))
            else:
                ssl_context = _default_context()
            _load_client_certificate(ssl_context, user, base)
        token_file = base / user["tokenFile"] if user.get("tokenFile") else None
        return cls(server, ssl_context, token=user.get("token"), token_file=token_file)

    def _bearer(self) -> str | None:
        if self.token_file is not None:
            return self.token_file.read_text().strip()
        return self.token

    def merge_patch(self, path: str, body: Mapping[str, Any]) -> None:
        """PATCH ``path`` with a JSON merge-patch, all within PATCH_TIMEOUT.

        Raises ApiError on an error status, OSError (TimeoutError, ConnectionError, ssl.SSLError)
        when the server cannot be reached or is too slow.
        """
        payload = json.dumps(body).encode()
        headers = {
            "Host": self._endpoint.authority,
            "User-Agent": "kubedag-worker",
            "Content-Type": "application/merge-patch+json",
            "Accept": "application/json",
            "Content-Length": str(len(payload)),
            "Connection": "close",  # one patch per interval: nothing to keep a connection for
        }
        bearer = self._bearer()
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        tls = self.ssl_context if self._endpoint.tls else None
        status, reason, detail = _exchange(
            self._endpoint, tls, _request("PATCH", self._endpoint.prefix + path, headers, payload)
        )
        if not 200 <= status < 300:
            raise ApiError(f"{f'HTTP {status} {reason}'.rstrip()}: {detail}")


class _Endpoint(NamedTuple):
    """The parts of an API server URL a request needs. No proxy: the API server is reached
    directly, as client-go does for in-cluster config."""

    tls: bool
    host: str  # without an IPv6 address's brackets
    port: int
    authority: str  # for the Host header, as written in the URL
    prefix: str  # a path the server is served under (behind some proxies), else ""

    @classmethod
    def parse(cls, server: str) -> _Endpoint:
        scheme, separator, rest = server.partition("://")
        if not separator or scheme.lower() not in ("http", "https"):
            raise ValueError(f"the API server URL {server!r} is not http(s)://host[:port]")
        authority, slash, prefix = rest.partition("/")
        tls = scheme.lower() == "https"
        if authority.startswith("["):
            host, _, after = authority[1:].partition("]")
            port = after.removeprefix(":")
        else:
            host, _, port = authority.partition(":")
        if not host or not (port.isdigit() or port == ""):
            raise ValueError(f"the API server URL {server!r} has no valid host and port")
        return cls(tls, host, int(port) if port else (443 if tls else 80), authority,
                   ("/" + prefix).rstrip("/") if slash else "")


def _default_context(cafile: str | None = None, cadata: str | None = None) -> ssl.SSLContext:
    """A verifying TLS client context (hostname included), the way urllib would build it."""
    import ssl  # noqa: PLC0415 - OpenSSL costs ~5 MiB of RSS: loaded only when first needed

    return ssl.create_default_context(cafile=cafile, cadata=cadata)


def _request(method: str, target: str, headers: Mapping[str, str], payload: bytes) -> bytes:
    lines = [f"{method} {target} HTTP/1.1"]
    for name, value in headers.items():
        if any(c in value for c in "\r\n\0"):  # a token file with a line break, say
            raise ValueError(f"invalid character in the {name} header")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


def _exchange(endpoint: _Endpoint, tls: ssl.SSLContext | None, request: bytes) -> tuple[
    int, str, str
]:
    """Send one request on a new connection; the status, its reason and, for an error, the body's
    message. Every step is bounded by what is left of PATCH_TIMEOUT."""
    deadline = time.monotonic() + PATCH_TIMEOUT
    # An ASCII host as bytes: a str would be IDNA-encoded, which loads unicodedata (~0.4 MiB).
    host = endpoint.host.encode() if endpoint.host.isascii() else endpoint.host
    sock = _connect(host, endpoint.port, deadline)
    try:
        if tls is not None:
            sock.settimeout(_left(deadline))
            sock = tls.wrap_socket(sock, server_hostname=host)  # closes sock on failure
        sock.settimeout(_left(deadline))
        sock.sendall(request)
        return _response(sock, deadline)
    finally:
        sock.close()


def _connect(host: bytes | str, port: int, deadline: float) -> socket.socket:
    """socket.create_connection, taking a host as bytes."""
    import socket  # noqa: PLC0415 - with the TLS context, on the first patch only

    error: OSError | None = None
    for family, kind, protocol, _, address in socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM
    ):
        sock = socket.socket(family, kind, protocol)
        try:
            sock.settimeout(_left(deadline))
            sock.connect(address)
        except OSError as failed:
            sock.close()
            error = failed
            continue
        return sock
    raise error or OSError(f"no address for {host!r}")


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError(f"the API server did not answer within {PATCH_TIMEOUT:g} s")
    return left


def _response(sock: socket.socket, deadline: float) -> tuple[int, str, str]:
    buffer = bytearray()

    def more() -> bool:
        """Read what has arrived into the buffer; False at the end of the stream."""
        sock.settimeout(_left(deadline))
        chunk = sock.recv(65536)
        buffer.extend(chunk)
        return bool(chunk)

    while True:  # an interim 1xx answer is followed by the real one
        end = buffer.find(b"\r\n\r\n")
        while end < 0:
            if len(buffer) > MAX_HEAD:
                raise ApiError("the API server's response headers are too long")
            if not more():
                raise ConnectionResetError("the API server closed the connection without answering")
            end = buffer.find(b"\r\n\r\n")
        status_line, *header_lines = buffer[:end].decode("latin-1").split("\r\n")
        del buffer[: end + 4]
        version, _, rest = status_line.partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/") or len(code) != 3 or not code.isdigit():
            raise ApiError(f"not an HTTP response: {status_line[:80]!r}")
        if not code.startswith("1"):
            break
    status = int(code)
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    try:
        body = _body(headers, buffer, more)
    except OSError:
        if 200 <= status < 300:
            return status, reason, ""  # done, whatever became of the rest of the Pod
        raise
    if 200 <= status < 300:
        return status, reason, ""
    return status, reason, _status_message(body.decode(errors="replace"))[:MAX_DETAIL]


def _body(headers: Mapping[str, str], buffer: bytearray, more: Callable[[], bool]) -> bytes:
    """The whole body (MAX_BODY at most); read on to its end, so the connection closes cleanly."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while (body := _dechunk(buffer)) is None:
            if len(buffer) > MAX_BODY or not more():
                return bytes(buffer)  # truncated: still worth a look for an error message
        return body
    length = headers.get("content-length", "")
    wanted = min(int(length), MAX_BODY) if length.isdigit() else MAX_BODY
    while len(buffer) < wanted and more():
        pass
    return bytes(buffer[:wanted])


def _dechunk(data: bytearray) -> bytes | None:
    """The body of a chunked transfer encoding; None while its last chunk has not arrived."""
    body, position = bytearray(), 0
    while True:
        line_end = data.find(b"\r\n", position)
        if line_end < 0:
            return None
        size_field = data[position:line_end].split(b";")[0].strip()
        try:
            size = int(size_field, 16)
        except ValueError:
            raise ApiError(f"a malformed chunk size in the response: {size_field[:20]!r}") from None
        if size == 0:
            return bytes(body)  # trailers, if any, do not matter
        start = line_end + 2
        if len(data) < start + size + 2:
            return None
        body += data[start : start + size]
        position = start + size + 2


def _status_message(body: str) -> str:
    """The message of a metav1.Status body, else the body itself."""
    try:
        status = json.loads(body)
    except ValueError:
        return body
    return str(status.get("message", body)) if isinstance(status, dict) else body


def _named(config: Mapping[str, Any], kind: str, name: str | None, key: str) -> dict[str, Any]:
    for entry in config.get(kind) or []:
        if entry.get("name") == name:
            found: dict[str, Any] = entry.get(key) or {}
            return found
    raise KeyError(f"kubeconfig has no {kind} entry named {name!r}")


def _load_client_certificate(context: ssl.SSLContext, user: Mapping[str, Any], base: Path) -> None:
    """client-certificate(-data) and client-key(-data): ssl wants files, so data goes to temp."""
    import tempfile  # noqa: PLC0415 - outside a pod only

    if "client-certificate-data" in user or "client-certificate" in user:
        with tempfile.TemporaryDirectory(prefix="kubedag-worker-") as tmp:
            cert, key = (
                _pem_file(user, field, base, Path(tmp) / field)
                for field in ("client-certificate", "client-key")
            )
            context.load_cert_chain(cert, key)


def _pem_file(user: Mapping[str, Any], field: str, base: Path, scratch: Path) -> str:
    import base64  # noqa: PLC0415 - outside a pod only

    if f"{field}-data" in user:
        scratch.write_bytes(base64.b64decode(user[f"{field}-data"]))
        scratch.chmod(0o600)
        return str(scratch)
    return str(base / user[field])


def sink_from_env(env: Mapping[str, str]) -> Sink:
    """Patch our own Pod when the downward API told us who we are; otherwise just log."""
    namespace, pod = env.get(contract.ENV_NAMESPACE), env.get(contract.ENV_POD_NAME)
    if namespace and pod:
        try:
            return pod_sink(namespace, pod, env)
        except Exception as error:  # no credentials: still run the stage, just log progress
            log.warning("no access to pod %s/%s; progress is only logged: %s", namespace, pod,
                        error)
    return log_sink


def _now() -> str:
    """UTC, to the millisecond: 2026-01-01T00:00:00.000Z (datetime would cost an import)."""
    seconds, nanoseconds = divmod(time.time_ns(), 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + (
        f".{nanoseconds // 1_000_000:03d}Z"
    )


class ProgressReporter:
    """Coalesces progress updates and sends them from a daemon thread, rate-limited.

    ``report`` only swaps the pending value under a lock. ``close`` sends the final value at
    once, bypassing the interval, since nothing follows it.
    """

    def __init__(
        self,
        sink: Sink,
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sink = sink
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending: Update | None = None
        self._closed = False
        self._last_sent = -float("inf")
        self.sent = 0
        self.dropped = 0
        self.failed = 0
        self._thread = threading.Thread(target=self._loop, name="kubedag-progress", daemon=True)
        self._thread.start()

    def report(self, fraction: float, message: str = "") -> None:
        update = Update(float(fraction), message[:MAX_MESSAGE], _now())
        with self._wake:
            if self._closed:
                return
            if self._pending is not None:
                self.dropped += 1
            self._pending = update
            self._wake.notify()

    def close(self, final: tuple[float, str] | None = None, timeout: float = PATCH_TIMEOUT) -> None:
        """Stop the thread; send ``final`` (or whatever is pending) without waiting the interval."""
        with self._wake:
            if final is not None:
                if self._pending is not None:
                    self.dropped += 1
                self._pending = Update(final[0], final[1][:MAX_MESSAGE], _now())
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout)
        log.info(
            "progress: %d patches sent, %d updates coalesced, %d failed",
            self.sent, self.dropped, self.failed,
        )

    def _next(self) -> Update | None:
        """Block until an update may be sent; None when closed with nothing left to send."""
        with self._wake:
            while True:
                if self._closed:
                    update, self._pending = self._pending, None
                    return update
                if self._pending is not None:
                    wait = self._last_sent + self._interval - self._clock()
                    if wait <= 0:
                        update, self._pending = self._pending, None
                        return update
                    self._wake.wait(wait)
                else:
                    self._wake.wait()

    def _loop(self) -> None:
        while True:
            update = self._next()
            if update is None:
                return
            self._last_sent = self._clock()
            try:
                self._sink(update)
                self.sent += 1
            except Exception as error:  # progress is advisory: log it and carry on
                self.failed += 1
                log.warning("progress update failed: %s", error)
