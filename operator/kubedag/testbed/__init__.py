"""A real local Kubernetes control plane for tests and the demo.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok built from pinned upstream
sources (``hack/build-cluster-bin.sh``) and started on 127.0.0.1. kwok simulates nodes, so pods
run and finish without a kubelet; pod annotations (see :mod:`kubedag.testbed.stages`) choose how
long a pod runs, its exit code and its termination message.
"""

from kubedag.testbed.cluster import ControlPlane, start_control_plane
from kubedag.testbed.stages import (
    ANNOTATION_DURATION,
    ANNOTATION_EXIT_CODE,
    ANNOTATION_MESSAGE,
)

__all__ = [
    "ANNOTATION_DURATION",
    "ANNOTATION_EXIT_CODE",
    "ANNOTATION_MESSAGE",
    "ControlPlane",
    "start_control_plane",
]
