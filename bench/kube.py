"""Raw HTTP helpers on the admin client: line-by-line watches (no model deserialisation, which
would lag behind a burst of 1,000 events) and the API server's own /metrics."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import urllib3
from kubernetes import client as k8s

Handler = Callable[[str, dict[str, Any], float], None]


def _pool(api: k8s.ApiClient) -> urllib3.PoolManager:
    pool: urllib3.PoolManager = api.rest_client.pool_manager
    return pool


def get_json(api: k8s.ApiClient, path: str, **params: Any) -> dict[str, Any]:
    url = f"{api.configuration.host}{path}"
    if params:
        url += "?" + urlencode(params)
    response = _pool(api).request("GET", url, timeout=30)
    if response.status != 200:
        raise RuntimeError(f"GET {path}: {response.status} {response.data[:300]!r}")
    data: dict[str, Any] = json.loads(response.data)
    return data


class Watch:
    """Watch a collection from now on, calling ``handler(type, object, monotonic time)``.

    The time is stamped as the event's line arrives, before it is parsed."""

    def __init__(self, api: k8s.ApiClient, path: str, handler: Handler,
                 label_selector: str | None = None) -> None:
        self.api, self.path, self.handler = api, path, handler
        self.params: dict[str, Any] = {}
        if label_selector:
            self.params["labelSelector"] = label_selector
        listing = get_json(api, path, limit=1, **self.params)
        self.resource_version = listing["metadata"]["resourceVersion"]
        self.stopped = threading.Event()
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self._loop, daemon=True, name=f"watch {path}")
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=10)

    def _loop(self) -> None:
        while not self.stopped.is_set():
            params = {**self.params, "watch": "1", "resourceVersion": self.resource_version,
                      "timeoutSeconds": 3, "allowWatchBookmarks": "true"}
            url = f"{self.api.configuration.host}{self.path}?{urlencode(params)}"
            try:
                response = _pool(self.api).request(
                    "GET", url, preload_content=False,
                    timeout=urllib3.Timeout(connect=5, read=30))
                buffer = b""
                for chunk in response.stream(65536):
                    buffer += chunk
                    while b"\n" in buffer:
                        line, buffer = buffer.split(b"\n", 1)
                        at = time.monotonic()
                        if line.strip():
                            self._event(json.loads(line), at)
                response.release_conn()
            except Exception as error:
                self.errors.append(repr(error))
                time.sleep(0.2)

    def _event(self, event: dict[str, Any], at: float) -> None:
        kind, obj = event["type"], event["object"]
        if kind == "ERROR":
            # 410 Gone: start again from now (the window is short; a gap is reported).
            self.errors.append(str(obj.get("message")))
            listing = get_json(self.api, self.path, limit=1, **self.params)
            self.resource_version = listing["metadata"]["resourceVersion"]
            return
        self.resource_version = obj["metadata"]["resourceVersion"]
        if kind != "BOOKMARK":
            self.handler(kind, obj, at)


_SAMPLE = re.compile(r'^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$')
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def request_totals(api: k8s.ApiClient) -> Counter[tuple[str, str, str, str]]:
    """apiserver_request_total as {(verb, resource, subresource, dry_run): count}."""
    response = _pool(api).request("GET", f"{api.configuration.host}/metrics", timeout=30)
    totals: Counter[tuple[str, str, str, str]] = Counter()
    for line in response.data.decode().splitlines():
        match = _SAMPLE.match(line)
        if match:
            labels = dict(_LABEL.findall(match["labels"]))
            key = (labels.get("verb", ""), labels.get("resource", ""),
                   labels.get("subresource", ""), labels.get("dry_run", ""))
            totals[key] += int(float(match["value"]))
    return totals
