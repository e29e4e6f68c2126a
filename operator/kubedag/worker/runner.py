"""One attempt of a stage, start to finish: run the work, then always leave a verdict.

Whatever happens, the pod must end with a termination message and an exit code from the
contract; a bare traceback would leave the operator guessing whether to retry. So the work is
bracketed by the usage sampler and the progress reporter, and every exception is classified.
"""

from __future__ import annotations

import logging
import signal
import traceback  # free: logging imports it
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import NamedTuple

from kubedag import contract
from kubedag.worker import termination
from kubedag.worker.context import context_from_env
from kubedag.worker.errors import (
    RetryableError,
    UsageError,
    WorkerError,
    describe,
    exit_code_for,
)
from kubedag.worker.gpu import gpu_sampler
from kubedag.worker.loader import load_processor
from kubedag.worker.progress import DEFAULT_INTERVAL, ProgressReporter, Sink, sink_from_env
from kubedag.worker.usage import Usage, UsageSampler

log = logging.getLogger("kubedag.worker")

FINAL_PROGRESS = (1.0, "done")


class Settings(NamedTuple):
    """How to run, from the CLI: either a processor reference or a command, never both."""

    env: Mapping[str, str]
    termination_path: Path
    processor: str | None = None
    command: Sequence[str] = ()
    progress_interval: float = DEFAULT_INTERVAL


class _TerminatedError(RetryableError):
    """The pod is being stopped (eviction, preemption, deletion): another attempt may finish."""


class _Terminated(BaseException):
    """Raised by the SIGTERM handler. A BaseException, like KeyboardInterrupt, so that neither a
    processor's `except Exception` nor logging's error handling (the signal may land inside a
    log call) can swallow it and leave the pod running until it is killed."""


def _raise_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    raise _Terminated(f"received {signal.Signals(signum).name}")


def _run_processor(settings: Settings, reporter: ProgressReporter) -> object:
    reference = settings.processor or settings.env.get(contract.ENV_PROCESSOR, "")
    if not reference:
        raise UsageError(f"no processor given (argument or {contract.ENV_PROCESSOR})")
    context = context_from_env(settings.env, reporter.report, logging.getLogger("processor"))
    processor = load_processor(reference)
    log.info("running %s for run %r stage %r attempt %d (%d items)",
             reference, context.run, context.stage, context.attempt, len(context.items))
    # A function decorated with the SDK's `Pipeline.task` names the upstream stages whose
    # outputs it takes as keyword arguments ({parameter: stage}); a plain attribute, so that
    # the worker needs neither the SDK nor `inspect` to call it.
    inputs: Mapping[str, str] | None = getattr(processor, contract.PROCESSOR_INPUTS_ATTRIBUTE, None)
    if inputs:
        return processor(context, **{param: context.inputs.get(stage, {})
                                     for param, stage in inputs.items()})
    return processor(context)


def _run_command(settings: Settings) -> None:
    """Run the command as a child (its output goes straight to the pod log); pass its verdict on.

    A contract exit code from the child is kept, so a command can say "retry me" too; any other
    failure is an unexpected error. SIGTERM is forwarded so the child can clean up.
    """
    import subprocess  # noqa: PLC0415 - only command stages need it (~0.3 MiB of RSS)

    log.info("running command %s", list(settings.command))
    try:
        child = subprocess.Popen(list(settings.command), env=dict(settings.env))
    except FileNotFoundError as error:
        raise UsageError(f"command not found: {settings.command[0]}") from error
    except PermissionError as error:
        raise UsageError(f"command not executable: {settings.command[0]}") from error
    try:
        code = child.wait()
    except _Terminated:
        child.terminate()
        child.wait()
        raise
    if code == contract.EXIT_OK:
        return
    if code < 0:
        signal_name = signal.Signals(-code).name
        raise _ChildFailedError(contract.EXIT_ERROR, f"command killed by {signal_name}")
    known = {contract.EXIT_RETRYABLE, contract.EXIT_USAGE, *contract.PERMANENT_EXIT_CODES}
    raise _ChildFailedError(code if code in known else contract.EXIT_ERROR,
                       f"command exited with code {code}")


class _ChildFailedError(WorkerError):
    """A command failed; its own exit code is kept if it is one the contract knows."""

    def __init__(self, exit_code: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def run(settings: Settings, sink: Sink | None = None) -> int:
    """Run one attempt and write its termination message; return the process exit code."""
    previous = signal.signal(signal.SIGTERM, _raise_on_sigterm)
    # The GPUs' baseline is read here, before the processor can touch them.
    sampler = UsageSampler(gpu=gpu_sampler(settings.env)).start()
    reporter: ProgressReporter | None = None
    outputs: object = None
    failure: tuple[int, str] | None = None
    try:
        # The entry point blocks SIGTERM until now (cli.main): one that came meanwhile lands
        # here, inside the try, so the attempt still ends with a verdict.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        reporter = ProgressReporter(sink or sink_from_env(settings.env), settings.progress_interval)
        if settings.command:
            _run_command(settings)
        else:
            outputs = _run_processor(settings, reporter)
    except BaseException as error:  # every way out must leave a verdict
        if isinstance(error, KeyboardInterrupt):
            error = _TerminatedError("interrupted")
        elif isinstance(error, _Terminated):
            error = _TerminatedError(str(error))
        if not isinstance(error, _ChildFailedError):
            log.error("stage failed:\n%s", "".join(traceback.format_exception(error)).rstrip())
        failure = (exit_code_for(error), describe(error))
    finally:
        signal.signal(signal.SIGTERM, previous)
    usage = sampler.stop()
    code, data = _verdict(outputs, usage, failure)
    if reporter is not None:
        # 1.0 only once the outputs are known to fit: a too-large result is a failure.
        reporter.close(final=FINAL_PROGRESS if code == contract.EXIT_OK else None)
    termination.write(settings.termination_path, data)
    if code != contract.EXIT_OK:
        log.error("exit %d", code)
    return code


def _verdict(
    outputs: object, usage: Usage, failure: tuple[int, str] | None
) -> tuple[int, bytes]:
    """The exit code and termination message; outputs that cannot be sent are a failure too."""
    if failure is None:
        try:
            return contract.EXIT_OK, termination.outputs_message(outputs, usage.to_json())
        except Exception as error:
            failure = (exit_code_for(error), describe(error))
    code, message = failure
    log.error("%s", message)
    return code, termination.error_message(message, usage.to_json())
