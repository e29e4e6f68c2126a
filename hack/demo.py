"""`make demo`: a local control plane, the operator, one document PipelineRun shown to the end.

Where the machine allows it (Linux, root), the stages run in real containers on the test bed's
real node (kubelet + containerd), with kubedag's images built here and the documents handed from
stage to stage through a real workspace claim; elsewhere on kwok's simulated pods. It says which.

KUBEDAG_DEMO_KWOK=1 makes it use kwok even where a real node could run. Everything it starts
stops when it exits (set KUBEDAG_DEMO_KEEP=1 to keep the control plane and
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

from kubedag.testbed import ControlPlane, start_control_plane
from kubedag.testbed.claims import copy_into_claim, create_claim
from kubedag.testbed.images import ensure_images
from kubedag.testbed.provisioner import start_local_path_provisioner
from kubedag.testbed.realnode import RealNode, start_real_node, unavailable_reason
from kubedag.worker.rbac import WORKER_POD_RULES

REPO = Path(__file__).resolve().parents[1]
KWOK_RUN = REPO / "examples/demo/document-run.yaml"
REAL_RUN = REPO / "examples/demo/document-run-real.yaml"
DOCUMENTS = REPO / "examples/documents"
CLAIM = "documents-demo-input"
WORKER_ACCOUNT = "kubedag-worker"
NAME = "documents-demo"


def _real_node(plane: ControlPlane) -> RealNode | None:
    """The real node with kubedag's images and a storage provisioner, or None (and why)."""
    reason = unavailable_reason(plane.bin_dir / "kubelet")
    if os.environ.get("KUBEDAG_DEMO_KWOK"):
        reason = "KUBEDAG_DEMO_KWOK is set"
    if reason is None:
        packages = subprocess.run(["bash", str(REPO / "hack/ensure-host-packages.sh")],
                                  check=False)
        if packages.returncode != 0:
            reason = "the host packages could not be installed (hack/ensure-host-packages.sh)"
    if reason is not None:
        print(f"no real node here ({reason}): the stages run on kwok's simulated pods")
        return None
    print("building kubedag's images if their inputs changed (make images) ...")
    images = ensure_images()
    node = start_real_node(plane, [Path(image.archive) for image in images.images])
    print(f"  real node {node.name} Ready in {node.started_in_seconds} s: the stages run in "
          "real containers")
    start_local_path_provisioner(plane)
    # The stage pods' identity, as the chart creates it: it may patch its own pod's progress.
    account = {"metadata": {"name": WORKER_ACCOUNT, "namespace": "default"}}
    role_ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": WORKER_ACCOUNT}
    subjects = [{"kind": "ServiceAccount", "name": WORKER_ACCOUNT, "namespace": "default"}]
    manifests = [
        {"apiVersion": "v1", "kind": "ServiceAccount", **account},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", **account,
         "rules": WORKER_POD_RULES},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", **account,
         "roleRef": role_ref, "subjects": subjects},
    ]
    subprocess.run([str(plane.bin_dir / "kubectl"), "apply", "-f", "-"], env=plane.env(),
                   input=json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests}),
                   text=True, check=True, capture_output=True)
    with plane.api_client() as api:
        create_claim(api, "default", CLAIM, size="256Mi")
    copy_into_claim(plane, "default", CLAIM, sorted(DOCUMENTS.iterdir()), "input",
                    node.pod_placement())
    print(f"  workspace claim {CLAIM} filled with {len(list(DOCUMENTS.iterdir()))} documents "
          "under input/")
    return node


def main() -> int:
    print("starting the local control plane (etcd, kube-apiserver, controller-manager, "
          "scheduler, kwok) ...")
    plane = start_control_plane()
    env = plane.env()
    operator = None
    node = None
    try:
        print(f"  up in {plane.started_in_seconds} s; logs in {plane.log_dir}")
        node = _real_node(plane)
        run_file = REAL_RUN if node is not None else KWOK_RUN
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
        print(f"kubectl apply -f {run_file.relative_to(REPO)}")
        began = time.monotonic()
        subprocess.run([*kubectl, "apply", "-f", str(run_file)], env=env, check=True)
        phase = _follow(plane.api_client(), timeout=300 if node is not None else 120)
        print(f"\n{phase} in {time.monotonic() - began:.1f} s on "
              f"{'the real node (real containers)' if node is not None else 'kwok (simulated)'}")
        print()
        subprocess.run([*kubectl, "get", "pipelinerun", NAME], env=env, check=False)
        print(f"\nkubedag get {NAME}")
        subprocess.run([str(Path(sys.executable).parent / "kubedag"), "--kubeconfig",
                        str(plane.kubeconfig), "get", NAME], env=env, check=False)
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
        if node is not None:
            node.stop()
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
