"""What `make cluster-up` and the real node save comes back the same, paths as paths."""

from __future__ import annotations

from pathlib import Path

from kubedag.testbed.cluster import ControlPlane
from kubedag.testbed.realnode import RealNode


def test_a_control_plane_and_a_real_node_round_trip(tmp_path: Path) -> None:
    plane = ControlPlane(kubeconfig=tmp_path / "kc", run_dir=tmp_path, bin_dir=tmp_path / "bin",
                         pids={"etcd": 12}, commands={"etcd": ["etcd", "--x"]})
    node = RealNode(name="vm", root=tmp_path / "rn", store=tmp_path / "store",
                    kubeconfig=tmp_path / "kc", pids={"kubelet": 7},
                    sysctls_before={"kernel.panic": "0"})
    for original in (plane, node):
        path = tmp_path / f"{type(original).__name__}.json"
        original.save(path)
        loaded = type(original).load(path)
        assert loaded == original  # a path read back as a string would not compare equal
