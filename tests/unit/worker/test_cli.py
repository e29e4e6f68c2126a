"""``kubedag-worker run`` as a real process: the termination message and exit code per outcome."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from kubedag import contract
from tests.unit.worker.support import REPO, SAMPLES, pod_env, run_worker, worker_command


def test_console_script_is_installed() -> None:
    scripts = entry_points(group="console_scripts", name="kubedag-worker")
    assert [s.value for s in scripts] == ["kubedag.worker.cli:main"]


def test_outputs_carry_params_inputs_and_identity(tmp_path: Path) -> None:
    result = run_worker(
        tmp_path, f"{SAMPLES}:echo",
        KUBEDAG_PARAMS=json.dumps({"lang": "en", "limit": 3}),
        KUBEDAG_INPUTS=json.dumps({"validate": {"accepted": 4}}),
        KUBEDAG_RUN="run-1", KUBEDAG_STAGE="extract", KUBEDAG_ATTEMPT="2",
    )
    assert result.code == contract.EXIT_OK, result.stderr
    message = result.message
    assert message["outputs"] == {
        "params": {"lang": "en", "limit": 3},
        "inputs": {"validate": {"accepted": 4}},
        "items": [],
        "run": "run-1",
        "stage": "extract",
        "attempt": 2,
        "workspace": str(tmp_path),
    }
    assert set(message) == {"outputs", "usage"}
    assert len(result.raw) <= contract.TERMINATION_MESSAGE_LIMIT


def test_processor_from_env_and_none_means_empty_outputs(tmp_path: Path) -> None:
    result = run_worker(tmp_path, KUBEDAG_PROCESSOR=f"{SAMPLES}:nothing")
    assert result.code == contract.EXIT_OK, result.stderr
    assert result.message["outputs"] == {}


def test_termination_path_flag_wins_over_env(tmp_path: Path) -> None:
    flagged = tmp_path / "flagged"
    result = run_worker(tmp_path, "--termination-path", str(flagged), f"{SAMPLES}:nothing")
    assert result.code == contract.EXIT_OK
    assert result.raw == b""  # the env's path was left alone
    assert json.loads(flagged.read_text())["outputs"] == {}


@pytest.mark.parametrize(
    ("index", "expected"),
    [("0", ["a", "b"]), ("1", ["c", "d"]), ("2", ["e"])],
)
def test_fanout_batch_is_picked_by_completion_index(
    tmp_path: Path, index: str, expected: list[str]
) -> None:
    result = run_worker(
        tmp_path, f"{SAMPLES}:echo",
        KUBEDAG_FANOUT_ITEMS=json.dumps(["a", "b", "c", "d", "e"]),
        KUBEDAG_FANOUT_BATCH_SIZE="2", JOB_COMPLETION_INDEX=index,
    )
    assert result.code == contract.EXIT_OK, result.stderr
    assert result.message["outputs"]["items"] == expected


def test_fanout_index_past_the_items_is_a_usage_error(tmp_path: Path) -> None:
    result = run_worker(
        tmp_path, f"{SAMPLES}:echo",
        KUBEDAG_FANOUT_ITEMS='["a", "b"]', KUBEDAG_FANOUT_BATCH_SIZE="2", JOB_COMPLETION_INDEX="1",
    )
    assert result.code == contract.EXIT_USAGE
    assert "past the 2 fan-out items" in result.message["error"]


def test_usage_figures_reflect_cpu_and_memory_used(tmp_path: Path) -> None:
    result = run_worker(tmp_path, f"{SAMPLES}:burn")
    assert result.code == contract.EXIT_OK, result.stderr
    usage = result.message["usage"]
    assert usage["cpuSeconds"] >= 0.3
    assert usage["peakRssBytes"] >= 50 * 1024 * 1024


def test_usage_of_a_command_includes_its_children(tmp_path: Path) -> None:
    burn = (
        "import time; b = bytearray(60 * 2**20); b[::4096] = b'1' * len(b[::4096]); "
        "t = time.process_time() + 0.3\nwhile time.process_time() < t: pass"
    )
    result = run_worker(tmp_path, "--", "sh", "-c", f'python3 -c "{burn}"')
    assert result.code == contract.EXIT_OK, result.stderr
    usage = result.message["usage"]
    assert usage["cpuSeconds"] >= 0.3
    assert usage["peakRssBytes"] >= 60 * 1024 * 1024


@pytest.mark.parametrize(
    ("processor", "code", "error"),
    [
        ("retryable", contract.EXIT_RETRYABLE, "upstream is busy"),
        ("timeout", contract.EXIT_RETRYABLE, "TimeoutError: the service did not answer in 5 s"),
        ("refused", contract.EXIT_RETRYABLE, "ConnectionRefusedError"),
        ("unreachable", contract.EXIT_RETRYABLE, "No route to host"),
        ("permanent", contract.EXIT_PERMANENT, "document 7 is corrupt"),
        ("value_error", contract.EXIT_PERMANENT, "ValueError: page count must be positive"),
        ("type_error", contract.EXIT_PERMANENT, "TypeError: expected str"),
        ("key_error", contract.EXIT_PERMANENT, "KeyError: missing key 'title'"),
        ("not_a_mapping", contract.EXIT_PERMANENT, "returned list"),
        ("not_json", contract.EXIT_PERMANENT, "not JSON-serializable"),
        ("missing_file", contract.EXIT_ERROR, "FileNotFoundError"),
        ("runtime_error", contract.EXIT_ERROR, "RuntimeError: something odd"),
        ("missing", contract.EXIT_USAGE, "has no processor 'missing'"),
        ("NOT_CALLABLE", contract.EXIT_USAGE, "is not callable"),
    ],
)
def test_each_kind_of_failure_has_its_exit_code(
    tmp_path: Path, processor: str, code: int, error: str
) -> None:
    result = run_worker(tmp_path, f"{SAMPLES}:{processor}")
    assert result.code == code, result.stderr
    assert error in result.message["error"]
    assert set(result.message) == {"error", "usage"}


@pytest.mark.parametrize(
    ("reference", "error"),
    [
        ("no_such_module:run", "cannot import processor module 'no_such_module'"),
        ("tests.unit.worker.broken_module:run", "leftpad"),
        ("not a reference", "not of the form"),
    ],
)
def test_bad_processor_reference_is_a_usage_error(
    tmp_path: Path, reference: str, error: str
) -> None:
    result = run_worker(tmp_path, reference)
    assert result.code == contract.EXIT_USAGE
    assert error in result.message["error"]


def test_no_processor_at_all_is_a_usage_error(tmp_path: Path) -> None:
    result = run_worker(tmp_path)
    assert result.code == contract.EXIT_USAGE
    assert contract.ENV_PROCESSOR in result.message["error"]


def test_malformed_params_are_a_usage_error(tmp_path: Path) -> None:
    result = run_worker(tmp_path, f"{SAMPLES}:echo", KUBEDAG_PARAMS="{not json")
    assert result.code == contract.EXIT_USAGE
    assert contract.ENV_PARAMS in result.message["error"]


def test_oversized_outputs_fail_with_a_message_that_fits(tmp_path: Path) -> None:
    result = run_worker(tmp_path, f"{SAMPLES}:huge")
    assert result.code == contract.EXIT_OUTPUT_TOO_LARGE
    assert len(result.raw) <= contract.TERMINATION_MESSAGE_LIMIT
    error = result.message["error"]  # valid JSON, not a truncated blob
    assert "termination message holds at most 4096" in error
    assert "x" * 100 not in result.raw.decode()


def test_long_error_is_shortened_to_a_kibibyte(tmp_path: Path) -> None:
    result = run_worker(tmp_path, f"{SAMPLES}:long_error")
    assert result.code == contract.EXIT_PERMANENT
    error = result.message["error"]
    assert error.startswith("ValueError: éé") and error.endswith("…")
    assert len(error.encode()) <= 1024


@pytest.mark.parametrize(
    ("script", "code", "error"),
    [
        ("exit 0", contract.EXIT_OK, None),
        ("exit 75", contract.EXIT_RETRYABLE, "command exited with code 75"),
        ("exit 65", contract.EXIT_PERMANENT, "command exited with code 65"),
        ("exit 3", contract.EXIT_ERROR, "command exited with code 3"),
        ("kill -KILL $$", contract.EXIT_ERROR, "command killed by SIGKILL"),
    ],
)
def test_command_exit_codes_are_passed_on_when_the_contract_knows_them(
    tmp_path: Path, script: str, code: int, error: str | None
) -> None:
    result = run_worker(tmp_path, "--", "sh", "-c", script)
    assert result.code == code, result.stderr
    assert result.message.get("error") == error


def test_missing_command_is_a_usage_error(tmp_path: Path) -> None:
    result = run_worker(tmp_path, "--", "no-such-command-kubedag")
    assert result.code == contract.EXIT_USAGE
    assert "command not found" in result.message["error"]


@pytest.mark.parametrize("processor", ["sleep_forever", "stubborn"])
def test_sigterm_ends_the_attempt_as_retryable_with_a_message(
    tmp_path: Path, processor: str
) -> None:
    """Also when the processor swallows every Exception (or the signal lands in a log call)."""
    with subprocess.Popen(
        [*worker_command(), "run", f"{SAMPLES}:{processor}"],
        env=pod_env(tmp_path), cwd=REPO, stderr=subprocess.PIPE, text=True,
    ) as process:
        assert process.stderr is not None
        for line in process.stderr:  # wait until the processor runs, not just the interpreter
            if "sleeping" in line:
                break
        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert process.wait(timeout=10) == contract.EXIT_RETRYABLE
        assert time.monotonic() - started < 5
        process.stderr.read()
    message = json.loads((tmp_path / "termination-log").read_text())
    assert message["error"] == "received SIGTERM"


def test_local_progress_is_logged_and_coalesced(tmp_path: Path) -> None:
    result = run_worker(
        tmp_path, "--progress-interval", "0.5", f"{SAMPLES}:progress_many",
        KUBEDAG_PARAMS=json.dumps({"updates": 20, "pause": 0.05}),
    )
    assert result.code == contract.EXIT_OK, result.stderr
    lines = [line for line in result.stderr.splitlines() if "progress " in line and "%" in line]
    assert lines[-1].endswith("progress 100% done")
    assert 2 <= len(lines) <= 5  # ~1 s of updates at one per 0.5 s, plus the final one


def test_missing_cluster_credentials_only_lose_progress(tmp_path: Path) -> None:
    result = run_worker(
        tmp_path, f"{SAMPLES}:nothing", KUBEDAG_NAMESPACE="ns", KUBEDAG_POD_NAME="pod",
        KUBECONFIG=str(tmp_path / "absent"),
    )
    assert result.code == contract.EXIT_OK, result.stderr
    assert "progress is only logged" in result.stderr


EARLY_SIGTERM = """
import os, signal, sys
import kubedag.worker.runner as runner
from kubedag.worker import cli
original = runner.run
def run(settings):
    os.kill(os.getpid(), signal.SIGTERM)  # after main started, before run's handler is in place
    return original(settings)
runner.run = run
sys.exit(cli.main(["run", "--", "sleep", "30"]))
"""


def test_a_sigterm_before_the_handler_is_in_place_still_ends_the_attempt(tmp_path: Path) -> None:
    # In its container the worker is PID 1: a SIGTERM with no handler is dropped there, and
    # the pod would be killed only at the end of its grace period. Outside a container the
    # same signal would kill the process with no verdict. Either way it must wait, pending,
    # for the runner's handler.
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", EARLY_SIGTERM], env=pod_env(tmp_path),
                          cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == contract.EXIT_RETRYABLE, done.stderr
    assert time.monotonic() - started < 20  # not the 30 s sleep
    message = json.loads((tmp_path / "termination-log").read_text())
    assert message["error"] == "received SIGTERM"
