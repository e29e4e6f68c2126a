"""The fake nodes kwok manages: some with GPUs, some without."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

KWOK_NODE_ANNOTATION: Final = "kwok.x-k8s.io/node"
# On an existing cluster the fake nodes are tainted so that nothing but test pods lands on them,
# and test pods select them by label so that they never land on real nodes.
TESTBED_TAINT_KEY: Final = "kubedag.io/testbed"
NODE_SELECTOR: Final = {"type": "kwok"}
TOLERATIONS: Final = [
    {"key": TESTBED_TAINT_KEY, "operator": "Equal", "value": "kwok", "effect": "NoSchedule"}
]


@dataclass(frozen=True)
class FakeNode:
    name: str
    cpu: str = "32"
    memory: str = "128Gi"
    pods: str = "500"
    gpus: int = 0

    def manifest(self, *, tainted: bool) -> dict[str, Any]:
        resources = {"cpu": self.cpu, "memory": self.memory, "pods": self.pods}
        if self.gpus:
            resources["nvidia.com/gpu"] = str(self.gpus)
        labels = {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "type": "kwok",
            "kubedag.io/gpu": "true" if self.gpus else "false",
        }
        spec: dict[str, Any] = {}
        if tainted:
            spec["taints"] = [
                {"key": TESTBED_TAINT_KEY, "value": "kwok", "effect": "NoSchedule"}
            ]
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "annotations": {KWOK_NODE_ANNOTATION: "fake"},
                "labels": labels,
            },
            "spec": spec,
            "status": {"capacity": resources, "allocatable": resources},
        }


DEFAULT_NODES: Final = (
    FakeNode("kwok-cpu-0"),
    FakeNode("kwok-gpu-0", gpus=4),
    FakeNode("kwok-gpu-1", gpus=4),
)
