"""The compact label-set store exports what prometheus-client's own metrics would."""

from __future__ import annotations

import gzip
import threading
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from kubedag.shell import series
from kubedag.shell.metrics import serve
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


def test_the_direct_exposition_writes_what_prometheus_client_writes() -> None:
    """Line by line, in registration order, with values prometheus-client formats in Go's way
    (large, fractional, infinite bounds) and labels and help to escape."""
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    Counter("t_plain_total", "Another family, formatted by prometheus-client.", ["x"],
            registry=ours).labels("1").inc()
    Counter("t_plain_total", "Another family, formatted by prometheus-client.", ["x"],
            registry=theirs).labels("1").inc()
    memory = (1024.0, 2**30, 2**36, float("inf"))
    for registry, counter, histogram in (
            (ours, LabelledCounter, LabelledHistogram),
            (theirs, Counter, Histogram)):
        attempts = counter("t_attempts_total", 'Attempts\\ "counted"\nby stage.', LABELS,
                           registry=registry)
        peak = histogram("t_peak_bytes", "Peak.", ("stage", "namespace", "zone"),
                         registry=registry, buckets=memory)
        attempts.labels('q"uo\\te', "new\nline").inc(3)
        attempts.labels("a", "b").inc(2.5)
        attempts.labels("a", "c").inc(12_345_678)
        peak.labels("s", "ns", "z").observe(3 * 2**30 + 0.25)
        peak.labels("s", "ns", "z").observe(100)
        peak.labels("empty", "ns", "z")
    direct = [line for line in series.exposition(ours).decode().splitlines()
              if "_created" not in line]
    assert direct == exposition(theirs)


def test_serve_answers_a_scrape_plain_and_gzipped() -> None:
    registry = CollectorRegistry()
    LabelledCounter("t_attempts_total", "Attempts.", LABELS, registry).labels("a", "s").inc()
    durations = LabelledHistogram("t_duration_seconds", "How long.", LABELS, registry, BUCKETS)
    for stage in range(1000):  # several pieces of series.CHUNK_BYTES
        durations.labels("a", f"s{stage}").observe(stage)
    server = serve(0, registry)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            plain = response.read()
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.headers["Content-Encoding"] == "gzip"
            assert gzip.decompress(response.read()) == plain
    finally:
        server.shutdown()
        server.server_close()
    assert len(plain) > 3 * series.CHUNK_BYTES
    assert plain == series.exposition(registry)
    assert b't_attempts_total{namespace="a",stage="s"} 1.0' in plain
