"""Integration tests run against a real API server: the local test bed, or KUBEDAG_KUBECONFIG.

The control plane starts once per session. If it cannot start, every integration test errors
(never skips): a suite that silently skipped its integration tests would pass for nothing.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from kubedag.testbed import start_control_plane
from kubedag.testbed.images import BuiltImages, ensure_images
from kubedag.testbed.kueue import KueueHandle, start_kueue, stop_kueue
from kubedag.testbed.provisioner import start_local_path_provisioner, stop_local_path_provisioner
from tests.integration.operator_process import OperatorProcess
from tests.integration.realnode_operator import InstalledOperator
from tests.integration.realnode_support import RealNodeHandle
from tests.integration.support import Cluster, install_crds

_started: list[Cluster] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)
        if "real_node" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.real_node)
    # Real-node tests last: they replace the host operator with the one installed in-cluster
    # by the chart, and every kwok test before them keeps the host operator it expects.
    items.sort(key=lambda item: item.get_closest_marker("real_node") is not None)
    if os.environ.get("KUBEDAG_KUBECONFIG"):
        # An existing cluster's API server is not ours to restart, and the test bed's real node
        # joins only its own control plane: those tests are left out on purpose, and said so,
        # rather than skipped at run time.
        def local_only(item: pytest.Item) -> bool:
            return any(item.get_closest_marker(m) for m in ("owns_control_plane", "real_node"))

        chosen = [i for i in items if not local_only(i)]
        left_out = [i for i in items if local_only(i)]
        if left_out:
            config.hook.pytest_deselected(items=left_out)
            print(f"\nKUBEDAG_KUBECONFIG set: left out {len(left_out)} test(s) that restart "
                  "the local control plane's components or need its real node")
            items[:] = chosen


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    existing = os.environ.get("KUBEDAG_KUBECONFIG")
    plane = start_control_plane(existing_kubeconfig=Path(existing) if existing else None)
    print(f"\ncontrol plane up in {plane.started_in_seconds} s; logs in {plane.log_dir}")
    handle = Cluster(plane=plane, api_client=plane.api_client())
    _started.append(handle)
    try:
        yield handle
    finally:
        handle.api_client.close()
        plane.stop()


@pytest.fixture(scope="session")
def built_images() -> BuiltImages:
    """kubedag's images (worker, operator) and the test bed's (pause, busybox), built here from
    the Dockerfiles when their inputs changed (`make images`), else taken from the cache."""
    return ensure_images()


@pytest.fixture(scope="session")
def real_node(cluster: Cluster, built_images: BuiltImages) -> Iterator[RealNodeHandle]:
    """A real kubelet + containerd node beside the kwok nodes, with the images imported.

    A machine that cannot run one (not Linux, not root) fails these tests with the reason:
    `make test` installs the packages it needs, so a missing piece is a defect, not a skip.
    """
    handle = RealNodeHandle(cluster, [Path(image.archive) for image in built_images.images])
    handle.start()
    print(f"\nreal node {handle.node.name} Ready in {handle.node.started_in_seconds} s "
          f"(images imported in {handle.node.images_imported_in_seconds} s)")
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(scope="session")
def storage(cluster: Cluster, real_node: RealNodeHandle) -> Iterator[None]:
    """A real dynamic provisioner (local-path) as the default StorageClass, its helper pods
    running on the real node."""
    start_local_path_provisioner(cluster.plane)
    try:
        yield
    finally:
        stop_local_path_provisioner(cluster.plane)


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (without waiting for it to go)."""
    name = f"kdt-{uuid.uuid4().hex[:8]}"
    cluster.core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        try:
            cluster.core.delete_namespace(name)
        except ApiException as error:
            if error.status != 404:
                raise


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """Name the control plane's log folder in every failing integration test's report."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and _started:
        report.sections.append(
            ("control plane", f"component logs: {_started[0].plane.log_dir}")
        )


@pytest.fixture(scope="session")
def crds(cluster: Cluster) -> None:
    """The generated CRDs and the PipelineRun's admission policy, applied and in force."""
    install_crds(cluster)


@pytest.fixture(scope="session")
def operator(cluster: Cluster, crds: None) -> Iterator[OperatorProcess]:
    # A short start-failure grace, so that tests of pods that cannot start end quickly; expired
    # cache entries deleted within a second.
    process = OperatorProcess(cluster, {"KUBEDAG_START_FAILURE_GRACE_SECONDS": "3",
                                       "KUBEDAG_CACHE_GC_SECONDS": "1"})
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def running_operator(operator: OperatorProcess) -> OperatorProcess:
    """The session's operator, restarted if an earlier test killed it."""
    if operator.process is None or operator.process.poll() is not None:
        operator.start()
    return operator


@pytest.fixture(scope="session")
def installed(cluster: Cluster, crds: None, real_node: RealNodeHandle,
              storage: None) -> Iterator[InstalledOperator]:
    """The chart's operator in-cluster (real-node tests run last: from here on it is the only
    operator; the host one is stopped)."""
    OperatorProcess.stop_all()
    installed = InstalledOperator(cluster, real_node)
    installed.install()
    installed.wait_ready()
    try:
        yield installed
    finally:
        logs = installed.logs()
        installed.uninstall()
        assert "forbidden" not in logs.lower(), [
            line for line in logs.splitlines() if "forbidden" in line.lower()][:5]


@pytest.fixture(scope="session")
def kueue(cluster: Cluster) -> Iterator[KueueHandle]:
    """Real Kueue (manager, CRDs, webhooks on 127.0.0.1) beside the session's control plane,
    managing batch/v1 Jobs that carry the queue label. Make queues per test with
    kubedag.testbed.kueue.create_queues (and delete_queues)."""
    handle = start_kueue(cluster.plane)
    print(f"\nKueue {handle.version} up; log: {handle.log}")
    try:
        yield handle
    finally:
        stop_kueue(cluster.plane)
