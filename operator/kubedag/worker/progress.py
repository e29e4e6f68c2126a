"""Progress: the latest fraction is published on the worker's own Pod, off the caller's thread.

Patching its own Pod (not the PipelineRun) keeps the worker's RBAC to its namespace's pods, and
the operator already watches those pods. A processor may report progress in a tight loop, so
updates are coalesced: a background thread sends at most one patch per interval, always the
latest value, and dropped intermediate values cost nothing. A slow or failing API server never
blocks or fails the stage: progress is advisory, the termination message is what counts.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from kubedag import contract

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 2.0  # seconds between patches; the operator folds progress in, no need to rush
MAX_MESSAGE = 256  # characters; an annotation is for a status line, not a log
PATCH_TIMEOUT = 5.0  # seconds; a hung API call must not hold the final flush forever


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


def pod_sink(namespace: str, pod: str) -> Sink:
    """A sink that merges the progress annotation into the named Pod.

    The client is imported here so a local run (no pod) never pays for loading it. In a pod the
    service account token is used; elsewhere KUBECONFIG (tests run the worker against a real
    control plane that way).
    """
    from kubernetes import client, config  # noqa: PLC0415 - slow; only a pod needs it

    configuration = client.Configuration()
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    core = client.CoreV1Api(client.ApiClient(configuration))

    def send(update: Update) -> None:
        body = {"metadata": {"annotations": {contract.ANNOTATION_PROGRESS: update.to_json()}}}
        core.patch_namespaced_pod(pod, namespace, body, _request_timeout=PATCH_TIMEOUT)
        log.debug("progress patch sent to pod %s/%s: %s", namespace, pod, update.to_json())

    return send


def sink_from_env(env: Mapping[str, str]) -> Sink:
    """Patch our own Pod when the downward API told us who we are; otherwise just log."""
    namespace, pod = env.get(contract.ENV_NAMESPACE), env.get(contract.ENV_POD_NAME)
    if namespace and pod:
        try:
            return pod_sink(namespace, pod)
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
