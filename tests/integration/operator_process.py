"""The operator as a real process (so a test can SIGKILL it), logging into the run directory."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import ClassVar

from tests.integration.support import Cluster


class OperatorProcess:
    # Every operator a test started, so the in-cluster operator's tests can stop them all: two
    # operators reconciling the same runs would fight.
    instances: ClassVar[list[OperatorProcess]] = []

    def __init__(self, cluster: Cluster, extra_env: dict[str, str] | None = None, *,
                 args: tuple[str, ...] = (), name: str = "kubedag-operator") -> None:
        """``args``: more command-line arguments (``--peering``); ``name``: of its log file,
        distinct for each of several operators."""
        OperatorProcess.instances.append(self)
        self.cluster = cluster
        self.extra_env = extra_env or {}
        self.args = args
        # Its own metrics port: never the default 8080 another test session may hold.
        self.metrics_port = int(self.extra_env.get("KUBEDAG_METRICS_PORT") or free_port())
        self.log = cluster.plane.log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        env = self.cluster.env()
        env["KUBEDAG_METRICS_PORT"] = str(self.metrics_port)
        env.update(self.extra_env)
        env["PYTHONUNBUFFERED"] = "1"
        self.starts += 1
        with self.log.open("ab") as out:
            out.write(f"\n===== start #{self.starts} at {time.strftime('%X')} =====\n".encode())
            self.process = subprocess.Popen(
                [sys.executable, "-m", "kubedag.shell.main", "--liveness", "", *self.args],
                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )
        self._wait_until_watching()

    def _wait_until_watching(self, timeout: float = 30.0) -> None:
        """kopf logs nothing reliable on readiness; its first handler call shows it is live."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"operator exited with {self.process.returncode}; "
                                     f"log: {self.log}")
            if "Handler 'run_event' succeeded" in self._tail() or self._idle_ready():
                return
            time.sleep(0.1)
        raise AssertionError(f"operator did not become ready; log: {self.log}")

    def logged(self, text: str) -> bool:
        """Whether the operator has logged ``text`` since it was last started."""
        return text in self._tail()

    def log_since_start(self) -> str:
        return self._tail()

    def _tail(self) -> str:
        text = self.log.read_text(errors="replace")
        return text[text.rfind("===== start #"):]

    def _idle_ready(self) -> bool:
        # With no PipelineRun around yet, kopf's startup handler finishing is the best signal.
        return "Handler 'startup' succeeded" in self._tail() or "startup' succeeded" in self._tail()

    def kill(self) -> None:
        """SIGKILL: no cleanup handlers, no flush - the crash a checkpoint must survive."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    @classmethod
    def stop_all(cls) -> None:
        for process in cls.instances:
            process.stop()

    def metrics(self) -> str:
        """Its /metrics page, as Prometheus would scrape it."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text: str = response.read().decode()
        return text

    @property
    def log_path(self) -> Path:
        return self.log


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
