"""Running ``kubedag-worker`` as a real process with the env a stage's pod would give it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubedag import contract

REPO = Path(__file__).resolve().parents[3]
SAMPLES = "tests.unit.worker.sample_processors"


def worker_command() -> list[str]:
    """The installed console script when there is one, else the same ``main`` via ``-m``.

    ``test_cli.py::test_console_script_is_installed`` fails while the script is not declared.
    """
    script = Path(sys.executable).parent / "kubedag-worker"
    return [str(script)] if script.exists() else [sys.executable, "-m", "kubedag.worker"]


def pod_env(tmp: Path, **extra: str) -> dict[str, str]:
    """A clean env: nothing kubedag-ish from the caller, results written under ``tmp``."""
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith("KUBEDAG_") and k not in ("KUBECONFIG", "JOB_COMPLETION_INDEX")
    }
    env["PYTHONPATH"] = str(REPO)
    env[contract.ENV_TERMINATION_MESSAGE_PATH] = str(tmp / "termination-log")
    env[contract.ENV_WORKSPACE] = str(tmp)
    env.update(extra)
    return env


@dataclass
class Result:
    code: int
    raw: bytes
    stderr: str

    @property
    def message(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.raw)
        return data


def run_worker(tmp: Path, *args: str, timeout: float = 60, **env: str) -> Result:
    environment = pod_env(tmp, **env)
    path = Path(environment[contract.ENV_TERMINATION_MESSAGE_PATH])
    path.unlink(missing_ok=True)
    done = subprocess.run(
        [*worker_command(), "run", *args], env=environment, cwd=REPO,
        capture_output=True, text=True, timeout=timeout, check=False,
    )
    return Result(done.returncode, path.read_bytes() if path.exists() else b"", done.stderr)
