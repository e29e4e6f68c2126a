"""One exception type for everything that can go wrong talking to the cluster.

The `kubernetes` package raises `ApiException` (with the whole HTTP response in its text),
`urllib3` errors (with retry chatter) and `ConfigException`; a person running `kubedag get`
wants one line that says what was asked and what the API server answered. Every call the
client makes goes through `api_errors`, so callers catch `ClientError` and nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

from kubernetes.client.exceptions import ApiException
from kubernetes.config import ConfigException
from urllib3.exceptions import HTTPError


class ClientError(Exception):
    """A request to the cluster failed; the message is one line meant for people."""


class NotFoundError(ClientError):
    """The object asked for does not exist (HTTP 404)."""


class ConflictError(ClientError):
    """The object already exists, or changed meanwhile (HTTP 409)."""


def api_message(error: ApiException) -> str:
    """The API server's own message (from its Status body), else the HTTP reason."""
    try:
        body = json.loads(error.body or "")
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return str(error.reason or f"HTTP {error.status}").strip()


@contextmanager
def api_errors(what: str) -> Iterator[None]:
    """Turn the client library's errors into a `ClientError` that names `what` was tried."""
    try:
        yield
    except ApiException as error:
        message = f"{what}: {api_message(error)}"
        if error.status == 404:
            raise NotFoundError(message) from None
        if error.status == 409:
            raise ConflictError(message) from None
        if error.status in (401, 403):
            raise ClientError(f"{what}: not allowed ({api_message(error)})") from None
        raise ClientError(message) from None
    except HTTPError as error:
        reason = getattr(error, "reason", None) or error
        raise ClientError(f"{what}: cannot reach the API server ({reason})") from None
    except ConfigException as error:
        raise ClientError(f"{what}: {error}") from None
