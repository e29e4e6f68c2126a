"""`Client`: the kubeconfig, a namespace, and the Pipeline / PipelineRun calls on them."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from kubedag import contract
from kubedag.api import Pipeline, PipelineRun, to_k8s
from kubedag.client.errors import ClientError, NotFoundError, api_errors
from kubedag.client.handle import RunHandle
from kubedag.client.objects import (
    FIELD_MANAGER,
    PLURAL_PIPELINES,
    PLURAL_RUNS,
    REQUEST_TIMEOUT_SECONDS,
    as_object,
    parse_run,
    pipeline_name,
    result_of,
    without_server_fields,
)
from kubedag.core.runview import RunResult

LATEST = "@latest"
# The kubernetes package's config loaders carry no type hints.
_config: Any = k8s_config
_IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class Client:
    """A connection to one cluster and namespace, configured like kubectl.

    `kubeconfig` and `context` default to kubectl's ($KUBECONFIG, ~/.kube/config, the current
    context); inside a pod without a kubeconfig the pod's service account is used. The
    namespace defaults to the context's namespace, else "default", as in kubectl.
    """

    def __init__(self, kubeconfig: str | Path | None = None, context: str | None = None,
                 namespace: str | None = None) -> None:
        config_file = str(kubeconfig) if kubeconfig is not None else None
        self.api_client, context_namespace = _connect(config_file, context)
        self.namespace: str = namespace or context_namespace or "default"
        self.custom = k8s.CustomObjectsApi(self.api_client)
        self.core = k8s.CoreV1Api(self.api_client)

    def close(self) -> None:
        """Release the connection pool (also done when the client is garbage collected)."""
        cast(Any, self.api_client).close()  # untyped in the kubernetes package

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- runs ------------------------------------------------------------------------------

    def create_run(self, run: PipelineRun) -> RunHandle:
        """Create the run (`metadata.generateName` works) and return a handle on it."""
        namespace = run.metadata.get("namespace") or self.namespace
        body = to_k8s(run)
        body.pop("status", None)
        body["metadata"] = {**run.metadata, "namespace": namespace}
        label = run.metadata.get("name") or f"{run.metadata.get('generateName', '')}…"
        with api_errors(f"creating run {label} in namespace {namespace}"):
            created = as_object(self.custom.create_namespaced_custom_object(
                contract.API_GROUP, contract.API_VERSION, namespace, PLURAL_RUNS, body,
                _request_timeout=REQUEST_TIMEOUT_SECONDS))
        return RunHandle(created["metadata"]["name"], namespace, self)

    def run(self, name: str) -> RunHandle:
        """A handle on an existing run; `@latest` names the newest run of the namespace."""
        if name == LATEST:
            runs = self.list_run_objects()
            if not runs:
                raise NotFoundError(f"no runs in namespace {self.namespace}")
            name = runs[0].metadata["name"]
        handle = RunHandle(name, self.namespace, self)
        handle.get()  # fail now, with a clear NotFound, rather than at the first use
        return handle

    def list_run_objects(self, pipeline: str | None = None) -> list[PipelineRun]:
        """The namespace's runs, newest first; only those of `pipeline` if given (by
        pipelineRef, or the `kubedag.io/pipeline` label of inline runs)."""
        with api_errors(f"listing runs in namespace {self.namespace}"):
            listing = as_object(self.custom.list_namespaced_custom_object(
                contract.API_GROUP, contract.API_VERSION, self.namespace, PLURAL_RUNS,
                _request_timeout=REQUEST_TIMEOUT_SECONDS))
        runs = [parse_run(item) for item in listing.get("items", [])]
        if pipeline is not None:
            runs = [r for r in runs if pipeline_name(r) == pipeline]
        # Names break ties between runs created in the same second, so the order is stable.
        runs.sort(key=lambda r: (r.metadata.get("creationTimestamp", ""), r.metadata["name"]),
                  reverse=True)
        return runs

    def list_runs(self, pipeline: str | None = None) -> list[RunResult]:
        """The namespace's runs as results (phase, stages, durations), newest first."""
        return [result_of(run) for run in self.list_run_objects(pipeline)]

    # --- pipelines -------------------------------------------------------------------------

    def apply_pipeline(self, pipeline: Pipeline) -> None:
        """Create the Pipeline, or update the one of the same name, as `kubectl apply
        --server-side` does: no read-modify-write, so the operator writing the Pipeline's
        status at the same moment cannot make it fail with a conflict."""
        name = pipeline.metadata.get("name")
        if not name:
            raise ClientError("the pipeline has no metadata.name")
        namespace = pipeline.metadata.get("namespace") or self.namespace
        body = to_k8s(pipeline)
        body.pop("status", None)
        body["metadata"] = {**pipeline.metadata, "namespace": namespace}
        with api_errors(f"applying pipeline {name} in namespace {namespace}"):
            self.custom.patch_namespaced_custom_object(
                contract.API_GROUP, contract.API_VERSION, namespace, PLURAL_PIPELINES, name,
                body, field_manager=FIELD_MANAGER, force=True,
                _content_type="application/apply-patch+yaml",
                _request_timeout=REQUEST_TIMEOUT_SECONDS)

    def get_pipeline(self, name: str) -> Pipeline:
        """The Pipeline of this name in the client's namespace."""
        with api_errors(f"reading pipeline {name} in namespace {self.namespace}"):
            body = as_object(self.custom.get_namespaced_custom_object(
                contract.API_GROUP, contract.API_VERSION, self.namespace, PLURAL_PIPELINES,
                name, _request_timeout=REQUEST_TIMEOUT_SECONDS))
        return Pipeline.model_validate(without_server_fields(body))


def _connect(config_file: str | None, context: str | None) -> tuple[k8s.ApiClient, str | None]:
    """An API client and the context's namespace, from a kubeconfig or the pod's account."""
    if config_file is not None and not Path(config_file).is_file():
        raise ClientError(f"kubeconfig {config_file}: no such file")
    try:
        with api_errors("loading the kubeconfig"):
            contexts, active = _config.list_kube_config_contexts(config_file)
            chosen = next((c for c in contexts if c["name"] == context), None) if context \
                else active
            if context and chosen is None:
                known = ", ".join(c["name"] for c in contexts)
                raise ClientError(f"no context {context!r} in the kubeconfig (contexts: {known})")
            api = _config.new_client_from_config(
                config_file=config_file, context=context, persist_config=False)
            namespace = ((chosen or {}).get("context") or {}).get("namespace")
            return api, namespace
    except ClientError:
        if config_file is not None or context is not None or not _IN_CLUSTER_NAMESPACE.exists():
            raise
    configuration = k8s.Configuration()
    _config.load_incluster_config(client_configuration=configuration)
    return k8s.ApiClient(configuration), _IN_CLUSTER_NAMESPACE.read_text().strip()
