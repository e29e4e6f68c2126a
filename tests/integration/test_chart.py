"""The Helm chart: lint, render, server-side dry run, a real install and its RBAC, alert rules."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from kubedag.api.crd import rendered_crds
from kubedag.contract import ANNOTATION_PROGRESS
from kubedag.worker.rbac import WORKER_POD_RULES
from tests.integration.chart_support import CHART, REPO, ensure_prometheus, render
from tests.integration.support import Cluster, wait_for

ALL_FEATURES = ("replicaCount=2", "metrics.serviceMonitor.enabled=true",
                "metrics.prometheusRule.enabled=true")


def test_helm_lint(cluster: Cluster) -> None:
    cluster.helm("lint", "--strict", str(CHART))
    cluster.helm("lint", "--strict", str(CHART), *(f"--set={v}" for v in ALL_FEATURES))


def test_schema_rejects_unknown_and_invalid_values(cluster: Cluster) -> None:
    for bad in ("replicaCout=2", "metrics.port=0", "image.pullPolicy=Sometimes",
                "operator.peeringLifetimeSeconds=1",
                "worker.admissionPolicy.validationActions={Deny,Warn}",
                "worker.admissionPolicy.enable=true", "tolerations[0].effect=Sometimes"):
        result = cluster.helm("template", "x", str(CHART), f"--set={bad}", check=False)
        assert result.returncode != 0, bad
        assert "schema" in result.stderr.lower(), result.stderr


def test_chart_crds_are_the_generated_ones() -> None:
    """`python -m kubedag.api.crd --out charts/kubedag/crds` keeps them equal to crds/."""
    for name, text in rendered_crds().items():
        assert (CHART / "crds" / name).read_text() == text, (
            f"charts/kubedag/crds/{name} is stale: run "
            "`python -m kubedag.api.crd --out charts/kubedag/crds`")
        assert (REPO / "crds" / name).read_text() == text


def test_rendered_objects_follow_the_conventions(cluster: Cluster) -> None:
    docs = render(cluster, "kd", "kd-system", *ALL_FEATURES)
    by_kind = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    deployment = by_kind[("Deployment", "kd-kubedag")]
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["resources"]["requests"] and container["resources"]["limits"]
    user = pod["securityContext"]["runAsUser"]
    assert isinstance(user, int) and user > 0
    assert container["image"] == "ghcr.io/kubedag/operator:0.1.0"
    assert container["command"] == ["kubedag-operator"]
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in pod["volumes"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 8080, "health": 8081}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert "--liveness=http://0.0.0.0:8081/healthz" in container["args"]
    # replicaCount=2: two pods, each a peer (the oldest leads, kubedag.shell.standby).
    assert deployment["spec"]["replicas"] == 2
    assert "--peering=kd-kubedag" in container["args"]
    assert ("ClusterKopfPeering", "kd-kubedag") in by_kind
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KUBEDAG_METRICS_PORT"] == "8080"
    assert env["KUBEDAG_PEERING_LIFETIME_SECONDS"] == "10"
    assert env["KUBEDAG_WORKER_IMAGE"] == "ghcr.io/kubedag/worker:0.1.0"
    for doc in docs:
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "kubedag"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
    dashboards = [d for d in docs if d["kind"] == "ConfigMap"]
    assert len(dashboards) == 2
    for config_map in dashboards:
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        (name, text), = config_map["data"].items()
        assert text == (CHART / "dashboards" / name).read_text().rstrip("\n")

    tuned = render(cluster, "kd", "kd-system", "replicaCount=2",
                   "operator.peeringLifetimeSeconds=30")
    container = next(d for d in tuned if d["kind"] == "Deployment")["spec"]["template"][
        "spec"]["containers"][0]
    assert {"name": "KUBEDAG_PEERING_LIFETIME_SECONDS", "value": "30"} in container["env"]

    single = render(cluster, "kd", "kd-system")
    args = next(d for d in single if d["kind"] == "Deployment")["spec"]["template"]["spec"][
        "containers"][0]["args"]
    assert not any(a.startswith("--peering") for a in args)
    assert {d["kind"] for d in single}.isdisjoint({"ServiceMonitor", "PrometheusRule",
                                                   "ClusterKopfPeering"})


def test_operator_placement_and_images(cluster: Cluster, tmp_path: Path) -> None:
    """The operator pod can be pinned to the test bed's real node (its label and taint)."""
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({
        "image": {"repository": "kubedag.local/operator", "tag": "dev", "pullPolicy": "Never"},
        "worker": {"image": "kubedag.local/worker:dev"},
        "nodeSelector": {"kubedag.io/real-node": "true"},
        "tolerations": [{"key": "kubedag.io/real-node", "operator": "Equal", "value": "true",
                         "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}]}]}}},
    }))
    text = cluster.helm("template", "kd", str(CHART), "--namespace", "kd-system",
                        "-f", str(values)).stdout
    deployment = next(d for d in yaml.safe_load_all(text) if d and d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"kubedag.io/real-node": "true"}
    assert pod["tolerations"][0]["key"] == "kubedag.io/real-node"
    assert "nodeAffinity" in pod["affinity"]
    container = pod["containers"][0]
    assert container["image"] == "kubedag.local/operator:dev"
    assert container["imagePullPolicy"] == "Never"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KUBEDAG_WORKER_IMAGE"] == "kubedag.local/worker:dev"
    # Without worker.image, the worker image follows image.tag.
    docs = render(cluster, "kd", "kd-system", "image.tag=1.2.3")
    container = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"][
        "spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KUBEDAG_WORKER_IMAGE"] == "ghcr.io/kubedag/worker:1.2.3"


def test_worker_admission_policy_renders(cluster: Cluster) -> None:
    docs = render(cluster, "kd", "kd-system", "worker.namespaces={team-a,team-b}")
    by_kind = {d["kind"]: d for d in docs}
    policy = by_kind["ValidatingAdmissionPolicy"]
    binding = by_kind["ValidatingAdmissionPolicyBinding"]
    assert policy["apiVersion"] == binding["apiVersion"] == "admissionregistration.k8s.io/v1"
    assert policy["metadata"]["name"] == "kd-kubedag-worker-own-pod"
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    (selector,) = binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"]
    assert selector["values"] == ["team-a", "team-b"]
    (condition,) = policy["spec"]["matchConditions"]
    for namespace in ("team-a", "team-b"):
        assert f"system:serviceaccount:{namespace}:kd-kubedag-worker" in condition["expression"]
    assert policy["spec"]["failurePolicy"] == "Fail"
    (rule,) = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rule["operations"] == ["UPDATE"] and "pods" in rule["resources"]
    text = yaml.safe_dump(policy)
    assert "authentication.kubernetes.io/pod-name" in text
    assert f"'{ANNOTATION_PROGRESS}'" in text
    for validation in policy["spec"]["validations"]:
        assert validation["messageExpression"] and validation["reason"] == "Forbidden"

    kinds = {d["kind"] for d in render(cluster, "kd", "kd-system",
                                        "worker.admissionPolicy.enabled=false")}
    assert kinds.isdisjoint({"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"})
    audit = render(cluster, "kd", "kd-system",
                   "worker.admissionPolicy.validationActions={Warn,Audit}")
    binding = next(d for d in audit if d["kind"] == "ValidatingAdmissionPolicyBinding")
    assert binding["spec"]["validationActions"] == ["Warn", "Audit"]


def test_worker_role_is_worker_pod_rules(cluster: Cluster) -> None:
    docs = render(cluster, "kd", "kd-system", "worker.namespaces={team-a,team-b}")
    roles = [d for d in docs if d["kind"] == "Role"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    for role in roles:
        assert role["rules"] == WORKER_POD_RULES


def test_alert_rules_pass_promtool(cluster: Cluster, tmp_path: Path) -> None:
    _, promtool = ensure_prometheus()
    docs = render(cluster, "kd", "kd-system", *ALL_FEATURES)
    rule = next(d for d in docs if d["kind"] == "PrometheusRule")
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert {"KubedagOperatorDown", "KubedagRunsFailing", "KubedagRunStuck"} <= alerts
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.fixture
def release(cluster: Cluster, crds: None, namespace: str) -> Iterator[tuple[str, str]]:
    name = f"kd{uuid.uuid4().hex[:6]}"
    cluster.kubectl("apply", "--server-side", "-f", str(CHART / "crds" / "kopf-peering.yaml"))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=30s",
                    "crd/clusterkopfpeerings.kopf.dev")
    try:
        yield name, namespace
    finally:
        cluster.helm("uninstall", name, "--namespace", namespace, "--wait", check=False)


def test_server_side_dry_run_then_install(cluster: Cluster,
                                          release: tuple[str, str]) -> None:
    name, namespace = release
    rendered = cluster.helm("template", name, str(CHART), "--namespace", namespace,
                            "--set=replicaCount=2").stdout
    cluster.kubectl("apply", "--dry-run=server", "--namespace", namespace, "-f", "-",
                    input=rendered)

    notes = cluster.helm("install", name, str(CHART), "--namespace", namespace).stdout
    full = f"{name}-kubedag"
    assert f"ValidatingAdmissionPolicy {full}-worker-own-pod (Deny)" in notes, notes
    for kind, obj in [("deployment", full), ("serviceaccount", full),
                      ("serviceaccount", f"{full}-worker"), ("role", f"{full}-worker"),
                      ("rolebinding", f"{full}-worker"), ("service", f"{full}-metrics"),
                      ("configmap", f"{full}-kubedag-overview"),
                      ("configmap", f"{full}-kubedag-pipeline")]:
        cluster.kubectl("get", kind, obj, "--namespace", namespace)
    cluster.kubectl("get", "clusterrole", full)
    cluster.kubectl("get", "clusterrolebinding", full)
    cluster.kubectl("get", "validatingadmissionpolicy", f"{full}-worker-own-pod")
    cluster.kubectl("get", "validatingadmissionpolicybinding", f"{full}-worker-own-pod")
    status = cluster.helm("status", name, "--namespace", namespace).stdout
    assert "STATUS: deployed" in status

    operator = f"system:serviceaccount:{namespace}:{full}"
    allowed = [
        ("get", "pipelines.kubedag.io"), ("list", "pipelines.kubedag.io"),
        ("watch", "pipelineruns.kubedag.io"), ("patch", "pipelineruns.kubedag.io/status"),
        ("patch", "pipelines.kubedag.io/status"), ("delete", "pipelineruns.kubedag.io"),
        ("update", "pipelineruns.kubedag.io/finalizers"), ("create", "jobs.batch"),
        ("delete", "jobs.batch"), ("watch", "jobs.batch"), ("list", "pods"),
        ("watch", "pods"), ("create", "events"), ("list", "nodes"), ("watch", "nodes"),
        ("create", "stagecacheentries.kubedag.io"), ("delete", "stagecacheentries.kubedag.io"),
        ("watch", "stagecacheentries.kubedag.io"),
    ]
    denied = [
        ("delete", "nodes"), ("get", "secrets"), ("list", "secrets"), ("create", "pods"),
        ("delete", "pods"), ("patch", "pods"), ("create", "pipelineruns.kubedag.io"),
        ("patch", "pipelineruns.kubedag.io"), ("update", "pipelines.kubedag.io"),
        ("patch", "jobs.batch"), ("create", "deployments.apps"), ("escalate", "clusterroles"),
        ("create", "serviceaccounts/token"), ("patch", "stagecacheentries.kubedag.io"),
    ]
    _check_can_i(cluster, operator, namespace, allowed, denied)

    worker = f"system:serviceaccount:{namespace}:{full}-worker"
    _check_can_i(cluster, worker, namespace, [("get", "pods"), ("patch", "pods")],
                 [("create", "pods"), ("delete", "pods"), ("get", "secrets"),
                  ("list", "pipelineruns.kubedag.io"), ("create", "jobs.batch")])
    assert _can_i(cluster, worker, "default", "patch", "pods") is False

    # Two replicas: the ClusterKopfPeering and the RBAC for it come with --peering.
    cluster.helm("upgrade", name, str(CHART), "--namespace", namespace,
                 "--set=replicaCount=2")
    cluster.kubectl("get", "clusterkopfpeering", full)
    wait_for(lambda: _can_i(cluster, operator, namespace, "patch",
                            "clusterkopfpeerings.kopf.dev"),
             timeout=10, what="peering RBAC")


def _can_i(cluster: Cluster, user: str, namespace: str, verb: str, resource: str) -> bool:
    resource, _, subresource = resource.partition("/")
    extra = [f"--subresource={subresource}"] if subresource else []
    result = cluster.kubectl("auth", "can-i", verb, resource, *extra, "--namespace", namespace,
                             f"--as={user}", check=False)
    answer = result.stdout.strip()
    assert answer in ("yes", "no"), f"can-i {verb} {resource}: {result.stdout}{result.stderr}"
    return answer == "yes"


def _check_can_i(cluster: Cluster, user: str, namespace: str,
                 allowed: list[tuple[str, str]], denied: list[tuple[str, str]]) -> None:
    wrong = [f"{verb} {res}: expected yes" for verb, res in allowed
             if not _can_i(cluster, user, namespace, verb, res)]
    wrong += [f"{verb} {res}: expected no" for verb, res in denied
              if _can_i(cluster, user, namespace, verb, res)]
    assert not wrong, f"{user}: " + "; ".join(wrong)
