"""Every call kubedag makes to the Kubernetes API, and nothing else.

The requests go out on the event loop, through one aiohttp session (the HTTP client kopf's
watches already use), with the credentials of the `kubernetes` client's configuration
(kubeconfig or in-cluster, refreshed as that client refreshes them). They used to go through
the synchronous `kubernetes` client on a thread pool: measured against the test bed's API
server, a write cost the operator 0.87-1.05 ms of CPU that way and 0.32-0.44 ms this way
(thread hand-offs, http.client's header parsing in Python, and the GIL passed to and fro).
Errors still come as the client's ApiException, with the status and the API server's body.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import aiohttp
import orjson
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from kubedag import contract
from kubedag.core.plan import Event
from kubedag.shell.metrics import METRICS, Metrics

PLURAL_RUNS = "pipelineruns"
PLURAL_CACHE_ENTRIES = "stagecacheentries"
PLURAL_PIPELINES = "pipelines"
PLURAL_BREAKERS = "circuitbreakers"
COMPONENT = "kubedag-operator"
# The API server gives up on a request after 60 s (--request-timeout); a connection that hangs
# must not hold a reconcile worker for longer.
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=70, sock_connect=10)


class PermanentApiError(Exception):
    """The API server rejected a request for good (invalid, forbidden): retrying won't help."""


@dataclass(frozen=True)
class RunRef:
    namespace: str
    name: str
    uid: str


def new_api_client(pool_size: int) -> k8s.ApiClient:
    try:
        k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
        configuration = k8s.Configuration.get_default_copy()
    except k8s_config.ConfigException:
        configuration = k8s.Configuration()
        k8s_config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    configuration.connection_pool_maxsize = pool_size
    return k8s.ApiClient(configuration)


class Kube:
    def __init__(self, api: k8s.ApiClient, metrics: Metrics | None = None) -> None:
        """``api``: the configured `kubernetes` client, whose host, certificates and token
        the requests use; at most its ``connection_pool_maxsize`` requests are in flight."""
        self.api = api
        self.metrics = metrics or METRICS
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None

    async def _call(self, method: str, path: str, *, body: dict[str, Any] | None = None,
                    query: list[tuple[str, str]] | None = None,
                    content_type: str = "application/json") -> dict[str, Any] | None:
        """One request, dicts in and out; ApiException for any status but 2xx."""
        data = await self._send(method, path, body=body, query=query, content_type=content_type)
        return cast(dict[str, Any], orjson.loads(data)) if data else None

    async def _send(self, method: str, path: str, *, body: dict[str, Any] | None = None,
                    query: list[tuple[str, str]] | None = None,
                    content_type: str = "application/json") -> bytes:
        """One request whose response body is returned undecoded: a caller that needs nothing
        from it (a created Job or Event comes back whole, 2-5 KB) skips decoding it."""
        configuration = self.api.configuration
        headers = {"Content-Type": content_type, "Accept": "application/json",
                   "User-Agent": COMPONENT}
        token = configuration.auth_settings().get("BearerToken")  # refreshed when it expires
        if token and token.get("value"):
            headers["Authorization"] = str(token["value"])
        async with self._session_on_this_loop().request(
                method, f"{configuration.host}{path}", params=query, headers=headers,
                data=None if body is None else orjson.dumps(body),
                proxy=configuration.proxy or None,
                server_hostname=configuration.tls_server_name or None) as response:
            data = await response.read()
        if not 200 <= response.status < 300:
            error = ApiException(status=response.status, reason=response.reason,
                                 body=data.decode("utf-8", errors="replace"))
            error.headers = response.headers
            raise error
        return data

    def _session_on_this_loop(self) -> aiohttp.ClientSession:
        """The session, opened on first use on the running loop (an aiohttp session belongs
        to the loop it was opened on: tests run each case on a loop of its own)."""
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._session_loop is not loop:
            connector = aiohttp.TCPConnector(ssl=_tls(self.api.configuration),
                                             limit=self.api.configuration.connection_pool_maxsize)
            self._session = aiohttp.ClientSession(connector=connector, timeout=REQUEST_TIMEOUT)
            self._session_loop = loop
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()

    def _wrote(self, verb: str, resource: str) -> None:
        self.metrics.api_write(verb, resource)

    async def create_job(self, manifest: dict[str, Any], *, dry_run: bool = False) -> str | None:
        """Create a Job; AlreadyExists counts as success (names are deterministic).

        Returns None on success, or the API server's message when it rejected the Job for good.
        """
        namespace = manifest["metadata"]["namespace"]
        return await self._create(f"/apis/batch/v1/namespaces/{namespace}/jobs", "jobs",
                                  manifest, dry_run=dry_run)

    async def create_claim(self, manifest: dict[str, Any], *,
                           dry_run: bool = False) -> str | None:
        """Create a run's workspace PersistentVolumeClaim; AlreadyExists is success (its name
        is a function of the run's). None, or the API server's message if it refused."""
        namespace = manifest["metadata"]["namespace"]
        return await self._create(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims",
                                  "persistentvolumeclaims", manifest, dry_run=dry_run)

    async def _create(self, path: str, resource: str, manifest: dict[str, Any], *,
                      dry_run: bool) -> str | None:
        """POST an object whose name is deterministic: AlreadyExists is success; a refusal
        for good (400/403/422) comes back as the API server's message, not an exception."""
        self._wrote("create", resource)
        try:
            await self._send("POST", path, body=manifest,
                             query=[("dryRun", "All")] if dry_run else None)
        except ApiException as error:
            if error.status == 409:
                return None
            if error.status in (400, 403, 422):
                return _api_message(error)
            raise
        return None

    async def delete_job(self, namespace: str, name: str) -> None:
        """Delete a Job and, in the background, its pods: the garbage collector deletes them
        gracefully (SIGTERM, then SIGKILL after terminationGracePeriodSeconds), so a pod
        never outlives its Job and the caller never waits for a pod to exit."""
        self._wrote("delete", "jobs")
        try:
            await self._send(
                "DELETE", f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}",
                body={"propagationPolicy": "Background"})
        except ApiException as error:
            if error.status != 404:
                raise

    async def patch_run_status(self, run: RunRef, patch: dict[str, Any]) -> dict[str, Any] | None:
        """Merge-patch the status subresource; returns the updated object (None if it is gone)."""
        self._wrote("patch", "pipelineruns/status")
        try:
            path = (f"/apis/{contract.API_GROUP}/{contract.API_VERSION}/namespaces/"
                    f"{run.namespace}/{PLURAL_RUNS}/{run.name}/status")
            result = await self._call("PATCH", path, body={"status": patch},
                                      content_type="application/merge-patch+json")
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return cast(dict[str, Any], result)

    async def get_pipeline_spec(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Pipeline's spec as the API server has it now (None: there is no such Pipeline)."""
        path = (f"/apis/{contract.API_GROUP}/{contract.API_VERSION}/namespaces/{namespace}/"
                f"{PLURAL_PIPELINES}/{name}")
        try:
            body = await self._call("GET", path)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return cast(dict[str, Any], (body or {}).get("spec"))

    async def get_run(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A PipelineRun as the API server has it now (None: there is no such run)."""
        path = (f"/apis/{contract.API_GROUP}/{contract.API_VERSION}/namespaces/{namespace}/"
                f"{PLURAL_RUNS}/{name}")
        try:
            return await self._call("GET", path)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    async def list_pipelines(self, namespaces: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """Every Pipeline (in ``namespaces``; empty: the whole cluster), as stored."""
        base = f"/apis/{contract.API_GROUP}/{contract.API_VERSION}"
        paths = ([f"{base}/namespaces/{n}/{PLURAL_PIPELINES}" for n in namespaces]
                 or [f"{base}/{PLURAL_PIPELINES}"])
        items: list[dict[str, Any]] = []
        for path in paths:
            body = await self._call("GET", path)
            items += (body or {}).get("items") or []
        return items

    async def patch_pipeline_status(self, namespace: str, name: str,
                                    status: dict[str, Any]) -> None:
        self._wrote("patch", "pipelines/status")
        try:
            await self._send("PATCH", (f"/apis/{contract.API_GROUP}/{contract.API_VERSION}/"
                                       f"namespaces/{namespace}/{PLURAL_PIPELINES}/{name}/status"),
                             body={"status": status}, content_type="application/merge-patch+json")
        except ApiException as error:
            if error.status != 404:
                raise

    def _entries_path(self, namespace: str | None) -> str:
        base = f"/apis/{contract.API_GROUP}/{contract.API_VERSION}"
        return (f"{base}/namespaces/{namespace}/{PLURAL_CACHE_ENTRIES}" if namespace
                else f"{base}/{PLURAL_CACHE_ENTRIES}")

    async def create_cache_entry(self, manifest: dict[str, Any], *,
                                 replace: bool = False) -> bool:
        """Create a StageCacheEntry; False when one with its key exists (an identical stage
        filled it first), unless ``replace``: then the old one is deleted and this one
        created (spec.cache Overwrite). Entries are never updated in place."""
        meta = manifest["metadata"]
        path = self._entries_path(meta["namespace"])
        self._wrote("create", PLURAL_CACHE_ENTRIES)
        try:
            await self._send("POST", path, body=manifest)
        except ApiException as error:
            if error.status != 409 or not replace:
                if error.status == 409:
                    return False
                raise
            await self.delete_cache_entry(meta["namespace"], meta["name"])
            self._wrote("create", PLURAL_CACHE_ENTRIES)
            await self._send("POST", path, body=manifest)
        return True

    async def delete_cache_entry(self, namespace: str, name: str) -> None:
        self._wrote("delete", PLURAL_CACHE_ENTRIES)
        try:
            await self._send("DELETE",
                                    f"{self._entries_path(namespace)}/{name}")
        except ApiException as error:
            if error.status != 404:
                raise

    async def list_cache_entries(self, namespaces: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """Every StageCacheEntry (in ``namespaces``; empty: the whole cluster), in pages."""
        items: list[dict[str, Any]] = []
        for namespace in namespaces or (None,):
            token = ""
            while True:
                query = [("limit", "500")] + ([("continue", token)] if token else [])
                body = await self._call("GET", self._entries_path(namespace), query=query)
                items += (body or {}).get("items") or []
                token = ((body or {}).get("metadata") or {}).get("continue") or ""
                if not token:
                    break
        return items

    async def delete_run(self, run: RunRef) -> None:
        self._wrote("delete", "pipelineruns")
        try:
            await self._send("DELETE", (f"/apis/{contract.API_GROUP}/{contract.API_VERSION}/"
                                        f"namespaces/{run.namespace}/{PLURAL_RUNS}/{run.name}"),
                             body={"preconditions": {"uid": run.uid}})
        except ApiException as error:
            if error.status not in (404, 409):
                raise

    async def create_breaker(self, manifest: dict[str, Any]) -> dict[str, Any] | None:
        """Create a CircuitBreaker; returns it as stored (None: one of that name exists)."""
        namespace = manifest["metadata"]["namespace"]
        self._wrote("create", PLURAL_BREAKERS)
        path = (f"/apis/{contract.API_GROUP}/{contract.API_VERSION}/namespaces/{namespace}/"
                f"{PLURAL_BREAKERS}")
        try:
            return await self._call("POST", path, body=manifest)
        except ApiException as error:
            if error.status == 409:
                return None
            raise

    async def patch_breaker_status(self, namespace: str, name: str,
                                   patch: dict[str, Any]) -> dict[str, Any] | None:
        """Merge-patch a CircuitBreaker's status; returns it as stored (None: it is gone)."""
        self._wrote("patch", f"{PLURAL_BREAKERS}/status")
        path = (f"/apis/{contract.API_GROUP}/{contract.API_VERSION}/namespaces/{namespace}/"
                f"{PLURAL_BREAKERS}/{name}/status")
        try:
            return await self._call("PATCH", path, body={"status": patch},
                                    content_type="application/merge-patch+json")
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    async def post_event(self, run: RunRef, event: Event, kind: str = "PipelineRun") -> None:
        """Best effort: a lost Event must never fail a reconcile. ``run``: the object the
        Event is about, a PipelineRun unless ``kind`` says otherwise."""
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{run.name}.{uuid.uuid4().hex[:12]}",
                         "namespace": run.namespace},
            "involvedObject": {
                "apiVersion": f"{contract.API_GROUP}/{contract.API_VERSION}",
                "kind": kind, "name": run.name, "namespace": run.namespace,
                **({"uid": run.uid} if run.uid else {})},
            "reason": event.reason, "message": event.message[:1024], "type": event.type,
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
            "source": {"component": COMPONENT}, "reportingComponent": COMPONENT,
            "reportingInstance": COMPONENT,
        }
        self._wrote("create", "events")
        with contextlib.suppress(ApiException):
            await self._send("POST",
                                    f"/api/v1/namespaces/{run.namespace}/events", body=body)


def _api_message(error: ApiException) -> str:
    try:
        return str(json.loads(error.body or "{}").get("message", error.reason))
    except (TypeError, ValueError):
        return str(error.reason)


def _tls(configuration: k8s.Configuration) -> ssl.SSLContext:
    """The TLS the `kubernetes` client would use: the cluster's CA, the client certificate
    when the credentials are one, no verification only where the kubeconfig says so."""
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
    if not configuration.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif configuration.assert_hostname is False:
        context.check_hostname = False
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file)
    return context
