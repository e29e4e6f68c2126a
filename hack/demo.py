"""`make demo`: a local control plane, the operator, one document PipelineRun shown to the end.

Everything it starts stops when it exits (set KUBEDAG_DEMO_KEEP=1 to keep the control plane and
the operator running for a look around; `make cluster-down` does not know about them, Ctrl-C
does).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from kubernetes import client as k8s

from kubedag.testbed import start_control_plane

REPO = Path(__file__).resolve().parents[1]
RUN = REPO / "examples/demo/document-run.yaml"
NAME = "documents-demo"


def main() -> int:
    print("starting the local control plane (etcd, kube-apiserver, controller-manager, "
          "scheduler, kwok) ...")
    plane = start_control_plane()
    env = plane.env()
    operator = None
    try:
        print(f"  up in {plane.started_in_seconds} s; logs in {plane.log_dir}")
        kubectl = [str(plane.bin_dir / "kubectl")]
        subprocess.run([*kubectl, "apply", "--server-side", "-f", str(REPO / "crds")],
                       env=env, check=True, capture_output=True)
        subprocess.run([*kubectl, "wait", "--for=condition=Established", "--timeout=30s",
                        "crd/pipelineruns.kubedag.io"], env=env, check=True, capture_output=True)
        log = plane.log_dir / "kubedag-operator.log"
        print(f"starting the kubedag operator (log: {log})")
        with log.open("ab") as out:
            operator = subprocess.Popen(
                [sys.executable, "-m", "kubedag.shell.main", "--liveness", ""],
                stdout=out, stderr=subprocess.STDOUT, env={**env, "PYTHONUNBUFFERED": "1"})
        time.sleep(2)
        print(f"kubectl apply -f {RUN.relative_to(REPO)}")
        subprocess.run([*kubectl, "apply", "-f", str(RUN)], env=env, check=True)
        phase = _follow(plane.api_client())
        print()
        subprocess.run([*kubectl, "get", "pipelinerun", NAME], env=env, check=False)
        print()
        subprocess.run([*kubectl, "get", "jobs", "-L", "kubedag.io/stage"], env=env, check=False)
        print()
        subprocess.run([*kubectl, "get", "events", "--field-selector",
                        f"involvedObject.name={NAME}", "--sort-by=.lastTimestamp",
                        "-o", "custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message"],
                       env=env, check=False)
        if os.environ.get("KUBEDAG_DEMO_KEEP"):
            print(f"\nkept running: export KUBECONFIG={plane.kubeconfig} "
                  f"PATH={plane.bin_dir}:$PATH  (Ctrl-C to stop)")
            while True:
                time.sleep(3600)
        return 0 if phase == "Succeeded" else 1
    except KeyboardInterrupt:
        return 130
    finally:
        if operator is not None:
            operator.terminate()
            operator.wait(timeout=10)
        plane.stop()


def _follow(api: k8s.ApiClient, timeout: float = 120) -> str:
    """Print progress as it changes, then the per-stage checkpoints."""
    custom = k8s.CustomObjectsApi(api)
    last = None
    deadline = time.monotonic() + timeout
    status: dict = {}
    while time.monotonic() < deadline:
        run = custom.get_namespaced_custom_object("kubedag.io", "v1alpha1", "default",
                                                  "pipelineruns", NAME)
        status = run.get("status") or {}
        progress = status.get("progress") or {}
        running = sorted(n for n, s in (status.get("stages") or {}).items()
                         if s.get("phase") == "Running")
        line = (f"  {status.get('phase', 'Pending'):<10} {progress.get('percent', 0):>3}% "
                f"({progress.get('completed', 0)}/{progress.get('total', '?')} stages)"
                f"  running: {', '.join(running) or '-'}")
        if line != last:
            eta = status.get("eta")
            print(f"{line}{'  (eta ' + eta + ')' if eta else ''}", flush=True)
            last = line
        if status.get("phase") in ("Succeeded", "Failed", "Cancelled"):
            break
        time.sleep(0.2)
    print("\nstage checkpoints (status.stages):")
    for name, stage in (status.get("stages") or {}).items():
        extra = stage.get("outputs") or stage.get("message") or ""
        print(f"  {name:<10} {stage.get('phase', ''):<10} attempts={stage.get('attempts', '-')}"
              f"  {json.dumps(extra) if isinstance(extra, dict) else extra}")
    return str(status.get("phase"))


if __name__ == "__main__":
    sys.exit(main())
