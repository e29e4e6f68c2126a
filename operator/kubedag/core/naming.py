"""Deterministic, length-safe names for the objects a run creates.

A Job's name is a function of (run, stage, attempt) only, so creating it twice is harmless: the
second create gets AlreadyExists. That is what makes Job creation exactly-once across operator
restarts without any bookkeeping written before the create.
"""

from __future__ import annotations

import hashlib
import re

# What stands for the Pipeline of a run with an inline pipelineSpec (in metrics' `pipeline`
# label, and in the stage cache, where such runs' entries explain each other's misses).
INLINE_PIPELINE = "(inline)"
MAX_JOB_NAME = 63  # Job names become label values (job-name), which are capped at 63.
_HASH_LENGTH = 8


def _digest(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:_HASH_LENGTH]


def job_name(run: str, stage: str, attempt: int, *, fallback: bool = False) -> str:
    """`<run>-<stage>-<attempt>`; a fallback's attempts `<run>-<stage>-fb<attempt>`.

    The fallback's mark sits in the last part, never in the stage part: a stage may be named
    `extract-fb`, but no stage Job's name ends in anything but digits, so the two kinds of
    name cannot collide.
    """
    last = f"fb{attempt}" if fallback else str(attempt)
    name = f"{run}-{stage}-{last}"
    if len(name) <= MAX_JOB_NAME:
        return name
    suffix = f"-{_digest(run, stage)}-{last}"
    prefix = f"{run}-{stage}"[: MAX_JOB_NAME - len(suffix)].rstrip("-.")
    return prefix + suffix


def label_value(value: str) -> str:
    """A label value (≤ 63 chars) that stays recognisable and unique when shortened."""
    if len(value) <= MAX_JOB_NAME:
        return value
    suffix = f"-{_digest(value)}"
    return value[: MAX_JOB_NAME - len(suffix)].rstrip("-._") + suffix


MAX_CLAIM_NAME = 253  # a DNS-1123 subdomain


def workspace_claim_name(run: str) -> str:
    """The PersistentVolumeClaim created for a run's volumeClaimTemplate: `<run>-workspace`."""
    name = f"{run}-workspace"
    if len(name) <= MAX_CLAIM_NAME:
        return name
    suffix = f"-{_digest(run)}-workspace"
    return run[: MAX_CLAIM_NAME - len(suffix)].rstrip("-.") + suffix


_NOT_IN_A_LABEL = re.compile(r"[^a-z0-9]+")


def breaker_name(key: str) -> str:
    """The CircuitBreaker object of a breaker key (an image such as `ghcr.io/x/y:1.2`, a
    processor such as `pkg.mod:fn`, or a user's label): a DNS-1123 label that stays
    recognisable, with a hash of the key whenever the key had to be changed to fit, so two
    keys that read alike (`a:b`, `a/b`) never share an object."""
    slug = _NOT_IN_A_LABEL.sub("-", key.lower()).strip("-") or "key"
    if slug == key and len(slug) <= MAX_JOB_NAME:
        return slug
    suffix = f"-{_digest(key)}"
    return slug[: MAX_JOB_NAME - len(suffix)].rstrip("-") + suffix
