"""A module that defines a pipeline with `@p.task` runs in the worker image, which has no
pydantic, kubernetes, yaml or kopf: importing `kubedag.sdk.Pipeline` and decorating must need
the standard library only, and the worker passes upstream outputs by parameter name."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from kubedag import contract

REPO = Path(__file__).resolve().parents[3]
NOT_IN_WORKER_IMAGE = ("pydantic", "pydantic_core", "kubernetes", "yaml", "kopf", "networkx",
                       "celpy")

PROBE = """
import json, sys
from pathlib import Path

BLOCKED = set(sys.argv[1].split(","))


class NotInTheWorkerImage:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not in the worker image")
        return None


sys.meta_path.insert(0, NotInTheWorkerImage())
from kubedag.worker.runner import Settings, run

termination = Path(sys.argv[2])
code = run(Settings(env=json.loads(sys.argv[3]), termination_path=termination))
print(json.dumps({
    "code": code,
    "message": json.loads(termination.read_text()),
    "blocked_loaded": sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED),
    "kubedag_loaded": sorted(m for m in sys.modules if m.startswith("kubedag.")),
}))
"""


def test_a_decorated_pipeline_module_runs_in_the_worker_without_operator_dependencies(
    tmp_path: Path,
) -> None:
    env = {
        contract.ENV_PROCESSOR: "examples.sdk.etl:load_totals",
        contract.ENV_PARAMS: json.dumps({"rows": [1, 2], "scale": 10}),
        contract.ENV_INPUTS: json.dumps({"extract": {"count": 2, "rows": [1, 2]},
                                         "transform": {"scaled": [10, 20]}}),
        contract.ENV_WORKSPACE: str(tmp_path),
        contract.ENV_RUN: "etl-abc12", contract.ENV_STAGE: "load-totals",
        contract.ENV_ATTEMPT: "1",
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE, ",".join(NOT_IN_WORKER_IMAGE),
         str(tmp_path / "termination-log"), json.dumps(env)],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
        env={"PYTHONPATH": f"{REPO}:{REPO / 'operator'}", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["code"] == contract.EXIT_OK, (result, done.stderr)
    assert result["message"]["outputs"] == {"total": 30, "rows": 2}
    assert result["blocked_loaded"] == []
    # The user's module pulled in the light part of the SDK only.
    sdk = {m for m in result["kubedag_loaded"] if m.startswith("kubedag.sdk")}
    assert sdk == {"kubedag.sdk", "kubedag.sdk.errors", "kubedag.sdk.friendly",
                   "kubedag.sdk.functions", "kubedag.sdk.loading", "kubedag.sdk.pipeline",
                   "kubedag.sdk.report"}, sdk
