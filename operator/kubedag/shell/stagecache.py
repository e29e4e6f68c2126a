"""The operator's side of the stage cache: keep the index of StageCacheEntry objects current,
create the entries decide() asks for, and delete those past their maxAge.

The index is loaded with one paged LIST before the first reconcile (so a run reconciled right
after a restart already sees every entry), then kept current by the watch. Lookups never call
the API server: a hit costs one dict access whether there are 10 entries or 100,000.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from kubedag.core.cache import CacheEntry, CacheIndex
from kubedag.shell.kube import Kube

log = logging.getLogger("kubedag.cache")

# How often expired entries are looked for (KUBEDAG_CACHE_GC_SECONDS).
GC_INTERVAL_SECONDS = 60.0


def _entry(body: Mapping[str, Any]) -> CacheEntry | None:
    try:
        return CacheEntry.from_body(body)
    except (KeyError, ValidationError):
        # Written by hand and wrong: never a hit, and never fatal.
        log.warning("ignoring malformed StageCacheEntry %s",
                    (body.get("metadata") or {}).get("name"))
        return None


class StageCacheStore:
    def __init__(self, kube: Kube, index: CacheIndex | None = None) -> None:
        self.kube = kube
        self.index = index if index is not None else CacheIndex()

    async def load(self, namespaces: tuple[str, ...]) -> None:
        for body in await self.kube.list_cache_entries(namespaces):
            self.observed(body, deleted=False)
        log.info("stage cache: %d entries", len(self.index))

    def observed(self, body: Mapping[str, Any], *, deleted: bool) -> None:
        """A watch event of a StageCacheEntry."""
        meta = body.get("metadata") or {}
        if deleted:
            self.index.remove(str(meta.get("namespace")), str(meta.get("name")))
            return
        entry = _entry(body)
        if entry is not None:
            self.index.add(entry)

    async def store(self, manifests: Iterable[dict[str, Any]], *, overwrite: bool) -> None:
        """Create the entries of stages that just succeeded, and index them at once: the
        watch would take a moment, and a run waiting for one looks again within seconds."""
        for manifest in manifests:
            try:
                await self.kube.create_cache_entry(manifest, replace=overwrite)
            except Exception:  # a result not cached is a later miss, never a failed run
                log.exception("storing the cache entry of stage %s failed",
                              manifest["spec"]["stage"])
                continue
            self.observed(manifest, deleted=False)

    async def collect_garbage(self, now: datetime) -> int:
        """Delete the entries past their expireTime; returns how many."""
        expired = self.index.expired(now)
        for entry in expired:
            await self.kube.delete_cache_entry(entry.namespace, entry.key)
            self.index.remove(entry.namespace, entry.key)
        return len(expired)

    async def collect_periodically(self, interval: float = GC_INTERVAL_SECONDS) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                deleted = await self.collect_garbage(datetime.now(UTC))
            except Exception:  # the API may be unreachable a moment: next time
                log.warning("deleting expired cache entries failed", exc_info=True)
                continue
            if deleted:
                log.info("stage cache: deleted %d expired entries", deleted)
