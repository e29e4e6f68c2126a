"""A Job run as local processes, with the Job controller's semantics that the core relies on.

`kubedag.core.observe.attempt_outcome` reads an attempt from a JobSummary and its PodSummaries;
this module produces the same summaries from processes, so the core cannot tell a local run
from a cluster: one process per completion index (at most `parallelism` at once), a failed pod
counted against `backoffLimit` (kubedag sets 0: each retry is a new Job, decided by the core),
`activeDeadlineSeconds` ending the Job as Failed with reason DeadlineExceeded, and deletion
sending SIGTERM, then SIGKILL after the pod's termination grace period.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import subprocess
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from kubedag import contract
from kubedag.core.observe import JobSummary, PodSummary, summarize_job
from kubedag.local.container import LocalCommand

log = logging.getLogger("kubedag.local")

# The Job controller's defaults for fields a manifest leaves out.
DEFAULT_BACKOFF_LIMIT = 6
DEFAULT_GRACE_SECONDS = 30
# The Job controller's words when activeDeadlineSeconds passes (pkg/controller/job).
DEADLINE_EXCEEDED = "DeadlineExceeded"
DEADLINE_MESSAGE = "Job was active longer than specified deadline"
BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
BACKOFF_LIMIT_MESSAGE = "Job has reached the specified backoff limit"
START_ERROR_EXIT_CODE = 128


@dataclass
class LocalPod:
    """One process: what a pod of the Job would be. Without a process it is a pod whose
    container cannot start (``waiting``), which the core fails after its start-failure grace."""

    name: str
    index: int | None
    created: datetime
    termination_path: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    waiting: tuple[str, str] | None = None
    finished: datetime | None = None
    exit_code: int | None = None
    deleting: bool = False
    # Why the process could not be started (the container runtime's StartError).
    start_error: str | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.finished is None

    def poll(self, now: datetime) -> bool:
        """Whether the process has ended since the last look."""
        if not self.running:
            return False
        assert self.process is not None
        code = self.process.poll()
        if code is None:
            return False
        # A process killed by a signal exits 128 + signal in a container's status (137, 143).
        self.exit_code = code if code >= 0 else 128 - code
        self.finished = now
        # The container ends with its main process: what it left running in the background
        # goes too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        return True

    def send(self, signum: signal.Signals) -> None:
        """Signal the process and everything it started (it leads its own process group)."""
        if self.running:
            assert self.process is not None
            # ProcessLookupError: it ended between the poll and the signal.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)

    def termination_message(self) -> str | None:
        """The file the container wrote, cut where the kubelet cuts it."""
        if self.start_error is not None:
            return self.start_error
        try:
            data = self.termination_path.read_bytes()
        except FileNotFoundError:
            return None
        return data[: contract.TERMINATION_MESSAGE_LIMIT].decode(errors="replace") or None

    def summary(self, job: JobSummary) -> PodSummary:
        phase = ("Running" if self.running else "Pending" if self.finished is None
                 else "Succeeded" if self.exit_code == 0 else "Failed")
        return PodSummary(
            name=self.name, job=job.name, stage=job.stage, attempt=job.attempt, phase=phase,
            index=self.index, exit_code=self.exit_code,
            termination_message=self.termination_message() if self.finished else None,
            terminated_reason=(None if self.finished is None else "StartError"
                               if self.start_error else "Completed" if self.exit_code == 0
                               else "Error"),
            started=self.created, finished=self.finished, deleting=self.deleting,
            waiting_reason=self.waiting[0] if self.waiting else None,
            waiting_message=self.waiting[1] if self.waiting else None,
            waiting_since=self.created if self.waiting else None,
        )


class LocalJob:
    """One attempt of one stage: the Job manifest the core built, run as processes."""

    def __init__(self, manifest: Mapping[str, Any], command: LocalCommand, files: Path,
                 now: datetime) -> None:
        spec = manifest["spec"]
        self.manifest = manifest
        self.command = command
        self.files = files
        self.created = now
        self.indexed = spec.get("completionMode") == "Indexed"
        base = summarize_job(dict(manifest))
        self.base = dataclasses.replace(base, created=now)
        self.parallelism = int(spec.get("parallelism") or 1)
        self.backoff_limit = int(spec.get("backoffLimit", DEFAULT_BACKOFF_LIMIT))
        self.grace = timedelta(seconds=int(spec["template"]["spec"].get(
            "terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS)))
        deadline = spec.get("activeDeadlineSeconds")
        self.deadline = now + timedelta(seconds=int(deadline)) if deadline else None
        self.pending: deque[int] = deque(range(self.base.completions))
        self.succeeded: set[int] = set()
        self.failures = 0
        self.pods: list[LocalPod] = []
        self.deleting = False
        self.kill_at: datetime | None = None
        # (condition, reason, message) once the Job controller has decided.
        self.verdict: tuple[str, str | None, str | None] | None = None

    @property
    def name(self) -> str:
        return self.base.name

    @property
    def alive(self) -> bool:
        return any(pod.running for pod in self.pods)

    def tick(self, now: datetime) -> bool:
        """Advance the Job as its controller would; whether anything the core sees changed."""
        changed = False
        for pod in self.pods:
            if pod.poll(now):
                changed = True
                self._count(pod)
        if self.kill_at is not None and now >= self.kill_at:
            for pod in self.pods:
                pod.send(signal.SIGKILL)
            self.kill_at = None
        if self.verdict is None and not self.deleting:
            changed |= self._settle(now)
        return changed

    def delete(self, now: datetime) -> None:
        """The core deleted the Job: its pods get SIGTERM, then SIGKILL after their grace."""
        self.deleting = True
        for pod in self.pods:
            pod.deleting = True
        self._terminate(now)

    def summary(self) -> JobSummary:
        condition, reason, message = self.verdict or (None, None, None)
        return dataclasses.replace(self.base, deleting=self.deleting, finished=condition,
                                   reason=reason, message=message)

    def pod_summaries(self) -> list[PodSummary]:
        job = self.summary()
        return [pod.summary(job) for pod in self.pods]

    def _count(self, pod: LocalPod) -> None:
        if pod.deleting:
            return
        index = pod.index if pod.index is not None else 0
        if pod.exit_code == 0:
            self.succeeded.add(index)
            return
        self.failures += 1
        if self.failures <= self.backoff_limit:
            self.pending.append(index)  # the Job controller replaces a failed pod

    def _settle(self, now: datetime) -> bool:
        if self._judge(now):
            return True
        started = False
        while (self.pending and self.failures <= self.backoff_limit
               and sum(pod.running or pod.waiting is not None for pod in self.pods)
               < self.parallelism):
            self._start(self.pending.popleft(), now)
            started = True
        # A process that could not even be started failed at once.
        return self._judge(now) or started

    def _judge(self, now: datetime) -> bool:
        """Reach the Job controller's verdict if it is due; whether it was reached now."""
        if self.deadline is not None and now >= self.deadline:
            self.verdict = ("Failed", DEADLINE_EXCEEDED, DEADLINE_MESSAGE)
            log.info("%s: %s", self.name, DEADLINE_MESSAGE)
        elif self.failures > self.backoff_limit:
            self.verdict = ("Failed", BACKOFF_LIMIT_EXCEEDED, BACKOFF_LIMIT_MESSAGE)
        elif len(self.succeeded) >= self.base.completions:
            self.verdict = ("Complete", None, None)
        else:
            return False
        # A finished Job's remaining pods are deleted (SIGTERM, then SIGKILL).
        for pod in self.pods:
            pod.deleting = pod.deleting or pod.running
        self._terminate(now)
        return True

    def _terminate(self, now: datetime) -> None:
        if not self.alive:
            return
        for pod in self.pods:
            pod.send(signal.SIGTERM)
        self.kill_at = now + self.grace

    def _start(self, index: int, now: datetime) -> None:
        tries = sum(1 for pod in self.pods if pod.index == index or not self.indexed)
        name = f"{self.name}-{index}" + (f"-{tries}" if tries else "")
        pod = LocalPod(name=name, index=index if self.indexed else None, created=now,
                       termination_path=self.files / f"{name}.termination-log",
                       log_path=self.files / f"{name}.log", waiting=self.command.cannot_start)
        self.pods.append(pod)
        if pod.waiting is not None:
            log.warning("%s cannot start: %s", name, pod.waiting[1])
            return
        env = {**self.command.env,
               contract.ENV_TERMINATION_MESSAGE_PATH: str(pod.termination_path)}
        if self.indexed:
            env[contract.ENV_COMPLETION_INDEX] = str(index)
        pod.termination_path.unlink(missing_ok=True)
        try:
            pod.process = _spawn(self.command.argv, env, pod.log_path)
        except OSError as error:
            # As a container runtime reports a command it cannot run: exit code 128.
            pod.start_error = f"cannot run {self.command.argv[0]!r}: {error.strerror or error}"
            pod.exit_code, pod.finished = START_ERROR_EXIT_CODE, now
            self._count(pod)
            log.warning("%s: %s", name, pod.start_error)
            return
        log.debug("%s started (pid %d): %s", name, pod.process.pid, " ".join(self.command.argv))


def _spawn(argv: Sequence[str], env: Mapping[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start the process in its own session (so that a SIGTERM reaches all it starts, as the
    container runtime's does), its output in its own log file."""
    with log_path.open("ab") as output:
        return subprocess.Popen(list(argv), env=dict(env), stdin=subprocess.DEVNULL,
                                stdout=output, stderr=subprocess.STDOUT,
                                start_new_session=True)
