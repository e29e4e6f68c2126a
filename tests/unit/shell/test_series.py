"""The compact label-set store exports what prometheus-client's own metrics would."""

from __future__ import annotations

import threading

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from kubedag.shell.series import LabelledCounter, LabelledHistogram

BUCKETS = (1, 5, 10, 60, float("inf"))
LABELS = ("namespace", "stage")


def exposition(registry: CollectorRegistry) -> list[str]:
    """The text exposition less prometheus-client's `_created` samples."""
    return [line for line in generate_latest(registry).decode().splitlines()
            if "_created" not in line]


def test_a_histogram_exports_the_same_text_as_prometheus_clients() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    compact = LabelledHistogram("t_duration_seconds", "How long.", LABELS, ours, BUCKETS)
    reference = Histogram("t_duration_seconds", "How long.", LABELS, buckets=BUCKETS,
                          registry=theirs)
    for metric in (compact, reference):
        metric.labels("a", "only-declared")  # exported with empty buckets
        for value in (0.5, 1, 1.0001, 5, 7, 600, 3600.5):  # on and between the bounds
            metric.labels("a", "s1").observe(value)
        metric.labels("b", "s1").observe(10)
    assert exposition(ours) == exposition(theirs)


def test_a_counter_exports_the_same_text_as_prometheus_clients() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    compact = LabelledCounter("t_attempts_total", "Attempts.", LABELS, ours)
    reference = Counter("t_attempts_total", "Attempts.", LABELS, registry=theirs)
    for metric in (compact, reference):
        metric.labels("a", "zero")
        metric.labels("a", "s1").inc()
        metric.labels("a", "s1").inc(2.5)
    assert exposition(ours) == exposition(theirs)
    with pytest.raises(ValueError, match="only goes up"):
        compact.labels("a", "s1").inc(-1)


def test_the_wrong_number_of_labels_and_a_second_metric_of_a_name_are_refused() -> None:
    registry = CollectorRegistry()
    counter = LabelledCounter("t_attempts_total", "Attempts.", LABELS, registry)
    with pytest.raises(ValueError, match="expected labels"):
        counter.labels("a")
    with pytest.raises(ValueError, match="Duplicated"):
        LabelledHistogram("t_attempts", "Clash.", LABELS, registry, BUCKETS)


def test_concurrent_increments_are_all_counted() -> None:
    counter = LabelledCounter("t_total", "T.", ("k",), None)

    def bump() -> None:
        for i in range(2000):
            counter.labels(str(i % 7)).inc()

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(sample.value for family in counter.collect()
               for sample in family.samples) == 8000
