"""Progress: the latest fraction is published on the worker's own Pod, off the caller's thread.

Patching its own Pod (not the PipelineRun) keeps the worker's RBAC to its namespace's pods, and
the operator already watches those pods. A processor may report progress in a tight loop, so
updates are coalesced: a background thread sends at most one patch per interval, always the
latest value, and dropped intermediate values cost nothing. A slow or failing API server never
blocks or fails the stage: progress is advisory, the termination message is what counts.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import ssl
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from kubedag import contract

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 2.0  # seconds between patches; the operator folds progress in, no need to rush
MAX_MESSAGE = 256  # characters; an annotation is for a status line, not a log
PATCH_TIMEOUT = 5.0  # seconds; a hung API call must not hold the final flush forever
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


@dataclass(frozen=True)
class Update:
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

    A plain HTTPS JSON merge-patch (urllib), so the worker image needs no Kubernetes client. In a
    pod the service account's token and CA are used; elsewhere the KUBECONFIG file (tests run the
    worker against a real control plane that way). Raises if neither gives credentials.
    """
    api = ApiAccess.from_env(os.environ if env is None else env)
    path = f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(pod, safe='')}"

    def send(update: Update) -> None:
        body = {"metadata": {"annotations": {contract.ANNOTATION_PROGRESS: update.to_json()}}}
        api.merge_patch(path, body)
        log.debug("progress patch sent to pod %s/%s: %s", namespace, pod, update.to_json())

    return send


class ApiError(Exception):
    """The API server answered with an error status."""


@dataclass(frozen=True)
class ApiAccess:
    """Where the API server is and how to authenticate to it: just enough for a merge-patch."""

    server: str
    ssl_context: ssl.SSLContext | None
    token: str | None = None
    token_file: Path | None = None  # re-read per request: the kubelet rotates projected tokens

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ApiAccess:
        if env.get("KUBERNETES_SERVICE_HOST"):
            return cls.in_cluster(env)
        return cls.from_kubeconfig(env)

    @classmethod
    def in_cluster(cls, env: Mapping[str, str], account: Path = SERVICE_ACCOUNT) -> ApiAccess:
        host, port = env["KUBERNETES_SERVICE_HOST"], env.get("KUBERNETES_SERVICE_PORT", "443")
        if ":" in host:  # an IPv6 address
            host = f"[{host}]"
        token_file = account / "token"
        if not token_file.is_file():
            raise FileNotFoundError(f"no service account token at {token_file}")
        context = ssl.create_default_context(cafile=str(account / "ca.crt"))
        return cls(f"https://{host}:{port}", context, token_file=token_file)

    @classmethod
    def from_kubeconfig(cls, env: Mapping[str, str]) -> ApiAccess:
        """The current context of $KUBECONFIG (its first file) or ~/.kube/config.

        Supports what a test bed or a `kubectl create token` kubeconfig holds: a server with
        certificate-authority(-data) or insecure-skip-tls-verify, and a user with a token,
        tokenFile and/or client-certificate(-data) + client-key(-data). PyYAML is imported only
        here: it is not a worker dependency, and a pod never reads a kubeconfig.
        """
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
                ssl_context = ssl.create_default_context()
                ssl_context.check_hostname = False
                ssl_context.verify_mode = ssl.CERT_NONE
            elif "certificate-authority-data" in cluster:
                ssl_context = ssl.create_default_context(
                    cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
                )
            elif "certificate-authority" in cluster:
                ssl_context = ssl.create_default_context(
                    cafile=str(base / cluster["certificate-authority"])
                )
            else:
                ssl_context = ssl.create_default_context()
            _load_client_certificate(ssl_context, user, base)
        token_file = base / user["tokenFile"] if user.get("tokenFile") else None
        return cls(server, ssl_context, token=user.get("token"), token_file=token_file)

    def _bearer(self) -> str | None:
        if self.token_file is not None:
            return self.token_file.read_text().strip()
        return self.token

    def merge_patch(self, path: str, body: Mapping[str, Any]) -> None:
        request = urllib.request.Request(
            self.server + path, data=json.dumps(body).encode(), method="PATCH",
            headers={"Content-Type": "application/merge-patch+json",
                     "Accept": "application/json"},
        )
        bearer = self._bearer()
        if bearer:
            request.add_header("Authorization", f"Bearer {bearer}")
        # No proxy from the environment: the API server is reached directly, as client-go does
        # for in-cluster config.
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=self.ssl_context)
        )
        try:
            with opener.open(request, timeout=PATCH_TIMEOUT) as response:
                response.read()
        except urllib.error.HTTPError as error:
            detail = _status_message(error.read(4096).decode(errors="replace"))
            raise ApiError(f"HTTP {error.code} {error.reason}: {detail}") from None


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
    if "client-certificate-data" in user or "client-certificate" in user:
        with tempfile.TemporaryDirectory(prefix="kubedag-worker-") as tmp:
            cert, key = (
                _pem_file(user, field, base, Path(tmp) / field)
                for field in ("client-certificate", "client-key")
            )
            context.load_cert_chain(cert, key)


def _pem_file(user: Mapping[str, Any], field: str, base: Path, scratch: Path) -> str:
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
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
