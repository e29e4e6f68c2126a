"""Deterministic, length-safe Job names and label values."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubedag.core.naming import MAX_JOB_NAME, job_name, label_value

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@pytest.mark.parametrize(("run", "stage", "attempt", "expected"), [
    ("run", "a", 1, "run-a-1"),
    ("docs-2024", "extract", 12, "docs-2024-extract-12"),
    ("r" * 30, "s" * 30, 1, f"{'r' * 30}-{'s' * 30}-1"),  # exactly 63: unchanged
])
def test_short_names_are_readable(run: str, stage: str, attempt: int, expected: str) -> None:
    assert job_name(run, stage, attempt) == expected


def test_long_names_are_shortened_with_a_hash_and_keep_the_attempt() -> None:
    name = job_name("r" * 100, "extract-pages", 3)
    assert len(name) == MAX_JOB_NAME
    assert name.startswith("r" * 40)
    assert re.fullmatch(r"r+-[0-9a-f]{8}-3", name)


def test_no_dash_or_dot_before_the_hash() -> None:
    # The cut falls right after a '-': it is stripped, so no '--' appears.
    run = "a" * 50 + "-"
    name = job_name(run + "b" * 20, "stage", 1)
    assert "--" not in name and DNS1123_LABEL.match(name)


RUN_NAMES = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,250}[a-z0-9])?", fullmatch=True)
STAGE_NAMES = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", fullmatch=True)


@given(RUN_NAMES, STAGE_NAMES, st.integers(1, 101))
def test_job_names_are_valid_and_deterministic(run: str, stage: str, attempt: int) -> None:
    name = job_name(run, stage, attempt)
    assert len(name) <= MAX_JOB_NAME
    assert DNS1123_LABEL.match(name), name
    assert name == job_name(run, stage, attempt)
    assert name.endswith(f"-{attempt}")


@given(RUN_NAMES, STAGE_NAMES, st.integers(1, 100))
def test_each_attempt_has_its_own_name(run: str, stage: str, attempt: int) -> None:
    assert job_name(run, stage, attempt) != job_name(run, stage, attempt + 1)


def test_long_names_differing_only_at_the_end_stay_unique() -> None:
    base = "x" * 70
    names = {job_name(base + suffix, stage, attempt)
             for suffix in ("a", "b")
             for stage in ("extract", "extract-pages", "s" * 63)
             for attempt in (1, 2, 10)}
    assert len(names) == 2 * 3 * 3
    # The same stage in two long runs, and two long stages in one run.
    assert job_name("r" * 60, "s" * 63, 1) != job_name("r" * 60, "s" * 62 + "t", 1)


def test_run_stage_split_is_not_ambiguous() -> None:
    # "a-b" + "c" and "a" + "b-c" read alike; once shortened, the hash tells them apart.
    long = "z" * 60
    assert job_name(long + "-a-b", "c", 1) != job_name(long + "-a", "b-c", 1)


@pytest.mark.parametrize(("value", "expected"), [
    ("short", "short"),
    ("", ""),
    ("v" * 63, "v" * 63),
])
def test_label_values_that_fit_are_unchanged(value: str, expected: str) -> None:
    assert label_value(value) == expected


@pytest.mark.parametrize("value", [
    "v" * 64,
    "a" * 200,
    "pipeline." + "x" * 100,
    "a" * 54 + "-._" + "b" * 20,  # the cut lands on separators: stripped
])
def test_long_label_values_are_shortened(value: str) -> None:
    short = label_value(value)
    assert len(short) <= MAX_JOB_NAME
    assert short == label_value(value)
    assert re.fullmatch(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?", short), short
    assert short[:20] == value[:20]
    assert short != label_value(value + "x")
