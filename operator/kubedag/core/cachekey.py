"""The computed cache key of a stage attempt, and why two keys differ (pure).

A key is never user-written (Argo's user-written keys collide): it is the sha256 of the
canonical JSON of everything that decides what the stage computes. The canonical JSON is
``json.dumps(to_json(components), sort_keys=True, separators=(",", ":"), ensure_ascii=False)``
encoded as UTF-8: sorted keys and no whitespace make it independent of dict ordering and of the
process that computes it. ``to_json`` holds, under camelCase names:

- ``schemaVersion``: ``SCHEMA_VERSION``; raising it when the components change invalidates every
  entry at once instead of letting an old entry match a key computed another way;
- ``namespace`` and ``stage``: a cache never crosses namespaces (nor tenants) or stages;
- ``imageDigest``: the digest the image resolved to, never its tag (a tag moves);
- ``command``, ``args``, ``processor``: after substitution, as the container gets them;
- ``params``: name → resolved value of the params the stage reads, less ``cache.ignoreParams``
  (an ignored param substituted into command, args or env still changes those);
- ``upstreamOutputs``: stage → outputs of each dependsOn stage (its inputs);
- ``env``: name → value after substitution, or ``{"valueFrom": ...}`` for a reference (the
  reference, not the secret's value, which kubedag never reads);
- ``fanOut``: the items and batch size of a fan-out stage (they decide its pods' work), else null;
- ``cacheVersion``: ``cache.version``, the user's way to invalidate a stage's entries by hand.

The components are stored beside an entry (``to_json``), so that a miss can be explained:
``explain_miss`` compares them with the current ones and names each change in words.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from kubedag.api import Stage
from kubedag.core.jobspec import fan_out_items, stage_env, upstream_outputs
from kubedag.core.stagecheck import params_read_by
from kubedag.core.substitution import substitute

# Raise when what goes into the key, or how, changes: old entries then miss, explained.
SCHEMA_VERSION = 1
NO_DIGEST = "image has no digest"


@dataclass(frozen=True)
class CacheComponents:
    """Everything a stage attempt's result depends on: the input of its cache key."""

    namespace: str
    stage: str
    image_digest: str
    command: tuple[str, ...] | None
    args: tuple[str, ...] | None
    processor: str | None
    params: Mapping[str, Any]
    upstream_outputs: Mapping[str, Mapping[str, Any]]
    env: Mapping[str, Any]
    fan_out: Mapping[str, Any] | None = None
    cache_version: str | None = None
    schema_version: int = SCHEMA_VERSION


@dataclass(frozen=True)
class NoCacheKey:
    """The stage cannot be cached (yet): it always runs, and ``reason`` says why."""

    reason: str


def components_for(
    *,
    stage: Stage,
    namespace: str,
    params: Mapping[str, Any],
    outputs: Mapping[str, Mapping[str, Any] | None],
    image_digest: str | None,
    cache_version: str | None = None,
    ignore_params: Collection[str] = (),
) -> CacheComponents | NoCacheKey:
    """The components of a stage's key, from the inputs ``jobspec.build_job`` builds its Job from.

    ``image_digest``: the digest its image resolved to (from a pod's ``imageID``); None (not
    known yet, e.g. before any pod pulled it) gives ``NoCacheKey``: a tag may move, so a key
    without the digest could hand back a result of other code. ``cache_version`` and
    ``ignore_params`` are the stage's ``cache.version`` and ``cache.ignoreParams``.

    A processor receives every param as ``context.params``, so it reads them all; a command
    reads those it names. Raises ``SubstitutionError`` as ``build_job`` does.
    """
    if not image_digest:
        return NoCacheKey(NO_DIGEST)
    read = set(params) if stage.processor is not None else params_read_by(stage)
    ignored = set(ignore_params)
    items = fan_out_items(stage, params)
    return CacheComponents(
        namespace=namespace,
        stage=stage.name,
        image_digest=image_digest,
        command=_substituted(stage.command, params, outputs),
        args=_substituted(stage.args, params, outputs),
        processor=stage.processor,
        params={name: params[name] for name in sorted(read - ignored) if name in params},
        upstream_outputs=upstream_outputs(stage, outputs),
        env={var["name"]: var["value"] if "value" in var else {"valueFrom": var["valueFrom"]}
             for var in stage_env(stage, params, outputs)},
        fan_out=(None if items is None or stage.fan_out is None
                 else {"items": items, "batchSize": stage.fan_out.batch_size}),
        cache_version=cache_version,
    )


def _substituted(
    texts: list[str] | None, params: Mapping[str, Any],
    outputs: Mapping[str, Mapping[str, Any] | None],
) -> tuple[str, ...] | None:
    return None if texts is None else tuple(substitute(t, params, outputs) for t in texts)


def to_json(components: CacheComponents) -> dict[str, Any]:
    """The components as JSON-ready data: what is hashed, and what is stored with an entry."""
    return {
        "schemaVersion": components.schema_version,
        "namespace": components.namespace,
        "stage": components.stage,
        "imageDigest": components.image_digest,
        "command": None if components.command is None else list(components.command),
        "args": None if components.args is None else list(components.args),
        "processor": components.processor,
        "params": dict(components.params),
        "upstreamOutputs": {name: dict(out) for name, out in components.upstream_outputs.items()},
        "env": dict(components.env),
        "fanOut": None if components.fan_out is None else dict(components.fan_out),
        "cacheVersion": components.cache_version,
    }


def from_json(data: Mapping[str, Any]) -> CacheComponents:
    """The components stored with an entry (``to_json``'s output) read back."""
    command, args = data.get("command"), data.get("args")
    return CacheComponents(
        schema_version=int(data["schemaVersion"]),
        namespace=data["namespace"],
        stage=data["stage"],
        image_digest=data["imageDigest"],
        command=None if command is None else tuple(command),
        args=None if args is None else tuple(args),
        processor=data.get("processor"),
        params=dict(data.get("params") or {}),
        upstream_outputs={name: dict(out)
                          for name, out in (data.get("upstreamOutputs") or {}).items()},
        env=dict(data.get("env") or {}),
        fan_out=data.get("fanOut"),
        cache_version=data.get("cacheVersion"),
    )


def canonical_json(components: CacheComponents) -> bytes:
    """The bytes that are hashed (see the module's docstring)."""
    return json.dumps(to_json(components), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def cache_key(components: CacheComponents) -> str:
    """The key: sha256 of the canonical JSON, in hex (64 characters: one more than a label
    value holds, so a ``kubedag.io/cache-key`` label carries its first 63)."""
    return hashlib.sha256(canonical_json(components)).hexdigest()


def explain_miss(stored: Mapping[str, Any], current: CacheComponents) -> list[str]:
    """Each component that differs between an entry's stored components and the current ones,
    in words ("param 'language' changed: 'en' → 'de'"); empty when none does."""
    now = to_json(current)
    changes: list[str] = []
    if stored.get("schemaVersion") != now["schemaVersion"]:
        changes.append(f"cache key schema changed: {stored.get('schemaVersion')} → "
                       f"{now['schemaVersion']}")
    for field, words in (("namespace", "namespace"), ("stage", "stage name"),
                         ("imageDigest", "image digest"), ("command", "command"),
                         ("args", "args"), ("processor", "processor"),
                         ("fanOut", "fan-out items"), ("cacheVersion", "cache.version")):
        before, after = stored.get(field), now[field]
        if before != after:
            changes.append(f"{words} changed: {_show(before)} → {_show(after)}")
    changes += _mapping_changes("param", stored.get("params") or {}, now["params"])
    changes += _mapping_changes("env", stored.get("env") or {}, now["env"])
    changes += _upstream_changes(stored.get("upstreamOutputs") or {}, now["upstreamOutputs"])
    return changes


def _mapping_changes(
    what: str, before: Mapping[str, Any], after: Mapping[str, Any]
) -> list[str]:
    changes: list[str] = []
    for name in sorted(before.keys() | after.keys()):
        if name not in after:
            changes.append(f"{what} {name!r} is no longer read (was {_show(before[name])})")
        elif name not in before:
            changes.append(f"{what} {name!r} is now read: {_show(after[name])}")
        elif before[name] != after[name]:
            changes.append(f"{what} {name!r} changed: {_show(before[name])} → "
                           f"{_show(after[name])}")
    return changes


def _upstream_changes(
    before: Mapping[str, Mapping[str, Any]], after: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    changes: list[str] = []
    for name in sorted(before.keys() | after.keys()):
        if name not in after:
            changes.append(f"no longer depends on upstream {name}")
        elif name not in before:
            changes.append(f"now depends on upstream {name}")
        elif before[name] != after[name]:
            old, new = before[name], after[name]
            keys = sorted(k for k in old.keys() | new.keys() if old.get(k, _ABSENT) !=
                          new.get(k, _ABSENT))
            label = "key" if len(keys) == 1 else "keys"
            changes.append(f"upstream {name}'s outputs changed ({label} {', '.join(keys)})")
    return changes


_ABSENT = object()


def _show(value: Any) -> str:
    """A value as people read it in a message: strings quoted, the rest as compact JSON."""
    return repr(value) if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
