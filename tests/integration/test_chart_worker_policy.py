"""The chart's ValidatingAdmissionPolicy: a worker may patch only its own pod's progress annotation.

Installed with helm on the test bed; the worker's identity is a real bound ServiceAccount token
(`kubectl create token --bound-object-kind Pod`), so the API server itself puts the
``authentication.kubernetes.io/pod-name`` claim in the request the policy sees, exactly as for
the projected token of a stage pod. Pods are kwok pods: nothing runs, only the API is exercised.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from kubedag import contract
from tests.integration.chart_support import CHART
from tests.integration.support import Cluster, wait_for

PROGRESS = contract.ANNOTATION_PROGRESS


@pytest.fixture
def installed(cluster: Cluster, namespace: str) -> Iterator[tuple[str, str]]:
    """A release in the test's namespace; yields (worker ServiceAccount, policy name)."""
    name = f"kd{uuid.uuid4().hex[:6]}"
    cluster.helm("install", name, str(CHART), "--namespace", namespace)
    try:
        yield f"{name}-kubedag-worker", f"{name}-kubedag-worker-own-pod"
    finally:
        cluster.helm("uninstall", name, "--namespace", namespace, "--wait", check=False)


def _pod(cluster: Cluster, namespace: str, name: str, service_account: str) -> str:
    """A long-lived kwok pod running as the worker; returns its UID."""
    pod = cluster.core.create_namespaced_pod(namespace, {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "stage"},
                     "annotations": {"team": "a", PROGRESS: "{}"}},
        "spec": {"serviceAccountName": service_account, "restartPolicy": "Never",
                 "containers": [{"name": "main", "image": "kubedag-worker"}],
                 **cluster.pod_placement()},
    })
    return str(pod.metadata.uid)


def _as(cluster: Cluster, token: str) -> k8s.CoreV1Api:
    """A client that is nothing but the bearer token (no admin client certificate)."""
    admin = cluster.api_client.configuration
    configuration = k8s.Configuration(host=admin.host)
    configuration.ssl_ca_cert = admin.ssl_ca_cert
    configuration.api_key = {"authorization": f"Bearer {token}"}
    return k8s.CoreV1Api(k8s.ApiClient(configuration))


def _patch(api: k8s.CoreV1Api, namespace: str, pod: str, body: dict[str, Any]) -> str | None:
    """None when allowed, else the API server's message."""
    try:
        api.patch_namespaced_pod(pod, namespace, body)
    except ApiException as error:
        assert error.status in (403, 422), f"{error.status}: {error.body}"
        return str(json.loads(error.body)["message"])
    return None


def _progress(fraction: float) -> dict[str, Any]:
    value = json.dumps({"fraction": fraction, "message": "working"})
    return {"metadata": {"annotations": {PROGRESS: value}}}


def test_worker_may_patch_only_its_own_progress_annotation(
    cluster: Cluster, namespace: str, installed: tuple[str, str]
) -> None:
    service_account, policy = installed
    own_uid = _pod(cluster, namespace, "own", service_account)
    _pod(cluster, namespace, "other", service_account)
    token = cluster.kubectl(
        "create", "token", service_account, "--namespace", namespace,
        "--bound-object-kind=Pod", "--bound-object-name=own", f"--bound-object-uid={own_uid}",
    ).stdout.strip()
    worker = _as(cluster, token)

    # The policy takes effect once the API server has loaded it: wait for the first denial.
    denied_other = wait_for(lambda: _patch(worker, namespace, "other", _progress(0.1)),
                            timeout=30, what=f"policy {policy} to deny patching another pod")
    assert policy in denied_other
    assert "may only patch its own pod" in denied_other, denied_other
    assert "pod own may not update pod other" in denied_other, denied_other

    # (a) Its own pod's progress annotation: allowed, and really written.
    assert _patch(worker, namespace, "own", _progress(0.5)) is None
    annotations = cluster.core.read_namespaced_pod("own", namespace).metadata.annotations
    assert json.loads(annotations[PROGRESS])["fraction"] == 0.5

    # (c) Anything else on its own pod: a label, another annotation, the spec.
    message = _patch(worker, namespace, "own", {"metadata": {"labels": {"app": "evil"}}})
    assert message and "may not change labels (app)" in message, message
    message = _patch(worker, namespace, "own", {"metadata": {"labels": {"new": "x"}}})
    assert message and "may not change labels (new)" in message, message
    message = _patch(worker, namespace, "own", {"metadata": {"annotations": {"team": "b"}}})
    assert message and "may not change annotations (team)" in message, message
    message = _patch(worker, namespace, "own",
                     {"metadata": {"annotations": {"team": None, PROGRESS: "{}"}}})
    assert message and "may not change annotations (team)" in message, message
    message = _patch(worker, namespace, "own", {"spec": {"activeDeadlineSeconds": 60}})
    assert message and "may not change the pod's spec" in message, message

    # A token that names no pod (not a projected pod token) may patch nothing.
    unbound = _as(cluster, cluster.kubectl("create", "token", service_account, "--namespace",
                                           namespace).stdout.strip())
    message = _patch(unbound, namespace, "own", _progress(0.6))
    assert message and "authentication.kubernetes.io/pod-name" in message, message

    # Nothing but the refused patches were refused: labels and annotations are as created.
    pod = cluster.core.read_namespaced_pod("own", namespace)
    assert pod.metadata.labels == {"app": "stage"}
    assert pod.metadata.annotations["team"] == "a"
    assert pod.spec.active_deadline_seconds is None
    # Others are not affected: the admin may still change what the worker may not.
    cluster.core.patch_namespaced_pod("own", namespace, {"metadata": {"labels": {"x": "y"}}})


def test_policy_type_checks_cleanly(
    cluster: Cluster, namespace: str, installed: tuple[str, str]
) -> None:
    """The API server type-checks every CEL expression against Pod: no warnings."""
    _, policy = installed
    api = k8s.AdmissionregistrationV1Api(cluster.api_client)

    def checked() -> dict[str, Any] | None:
        status = api.read_validating_admission_policy(policy).status
        if status is None or status.type_checking is None:
            return None
        return {"warnings": status.type_checking.expression_warnings or []}

    result = wait_for(checked, timeout=30, what=f"type checking of {policy}")
    assert result["warnings"] == [], result
