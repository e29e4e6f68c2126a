"""The real node as a test sees it: started once per session, stoppable and restartable (the
teardown test stops it, checks the host, and starts it again for the tests after it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubedag.testbed.realnode import RealNode, start_real_node
from tests.integration.support import Cluster


@dataclass
class RealNodeHandle:
    cluster: Cluster
    archives: list[Path]
    _node: RealNode | None = field(default=None, repr=False)

    @property
    def node(self) -> RealNode:
        assert self._node is not None, "the real node is stopped"
        return self._node

    @property
    def name(self) -> str:
        return self.node.name

    def start(self) -> RealNode:
        if self._node is None:
            self._node = start_real_node(self.cluster.plane, self.archives)
        return self._node

    def stop(self) -> None:
        if self._node is not None:
            self._node.stop()
            self._node = None

    def pod_placement(self) -> dict[str, Any]:
        return self.node.pod_placement()
