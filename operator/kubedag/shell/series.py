"""Counters and histograms with many label sets, kept in a few hundred bytes a label set.

prometheus-client gives every label set of a metric its own metric object, and every bucket
of a histogram its own value object with its own lock: about 300 bytes a bucket. kubedag's
stage series are labelled by stage and exported at 0 from a run's start (`Metrics._initialise`),
so a stage cost 26 KB: the 2,000 stages of `make bench`'s pipelines held 52 MiB, most of the
operator's growth over the bench (its peak RSS went from 93 MiB after the chain to 180 MiB).

Here a family keeps one list of numbers per label set, under one lock for the whole family
(increments are rare: a few per stage), and builds the exposition when Prometheus scrapes.
The exposition is prometheus-client's, less the `_created` samples, which nothing reads.
"""

from __future__ import annotations

import threading
import weakref
from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

# Set while `exposition_chunks()` has prometheus-client format the rest of a registry: the
# families here then yield no samples, as they write their own text.
_WRITING_DIRECTLY = threading.local()
# The families registered on each registry, in registration order.
_FAMILIES: weakref.WeakKeyDictionary[CollectorRegistry, list[_Family]] = (
    weakref.WeakKeyDictionary())


# Bytes of text handed on at a time: the whole exposition after `make bench`'s pipelines is
# 21 MB, and built at once (as generate_latest does) it would be the operator's peak RSS.
CHUNK_BYTES = 1 << 16


def exposition_chunks(registry: CollectorRegistry) -> Iterator[bytes]:
    """What `generate_latest(registry)` returns (the text format, version 0.0.4), in pieces of
    about CHUNK_BYTES, with the series of this module's families written here directly:
    prometheus-client builds an object per sample and escapes each sample's labels again,
    which took 1.8 s (holding the GIL, so the operator's loop stood still) for the 200,000
    lines of the stage series after `make bench`'s pipelines; this takes 0.19 s."""
    _WRITING_DIRECTLY.active = True
    try:
        head = generate_latest(registry)
    finally:
        _WRITING_DIRECTLY.active = False
    yield head
    pending: list[str] = []
    size = 0
    for family in list(_FAMILIES.get(registry, ())):
        for text in family.texts():
            pending.append(text)
            size += len(text)
            if size >= CHUNK_BYTES:
                yield "".join(pending).encode()
                pending, size = [], 0
    if pending:
        yield "".join(pending).encode()


def exposition(registry: CollectorRegistry) -> bytes:
    """The whole of `exposition_chunks` at once."""
    return b"".join(exposition_chunks(registry))


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def _number(value: float) -> str:
    """As prometheus-client writes a sample's value (Go's formatting)."""
    if 0 <= value < 1_000_000 and float(value).is_integer():  # counts, mostly
        return f"{int(value)}.0"
    return str(floatToGoString(value))  # type: ignore[no-untyped-call]


class _Family(Collector):
    """One metric's label sets, each a list of numbers (what they mean is the subclass's)."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str],
                 registry: CollectorRegistry | None, width: int) -> None:
        self.name, self.documentation = name, documentation
        self.labelnames = tuple(labelnames)
        self._width = width  # numbers a label set keeps
        self._series: dict[tuple[str, ...], list[float]] = {}
        self._lock = threading.Lock()
        if registry is not None:
            registry.register(self)
            _FAMILIES.setdefault(registry, []).append(self)

    def _key(self, labelvalues: Sequence[object]) -> tuple[str, ...]:
        """The label set's key, its series created at 0 if new (exported from now on)."""
        if len(labelvalues) != len(self.labelnames):
            raise ValueError(f"{self.name}: expected labels {self.labelnames}, "
                             f"got {tuple(labelvalues)}")
        key = tuple(str(value) for value in labelvalues)
        if key not in self._series:
            zeros: list[float] = [0] * self._width  # small ints are shared, floats are not
            with self._lock:
                self._series.setdefault(key, zeros)
        return key

    def _add(self, key: tuple[str, ...], index: int, amount: float) -> None:
        with self._lock:
            self._series[key][index] += amount

    def _snapshot(self) -> list[tuple[tuple[str, ...], list[float]]]:
        with self._lock:
            return [(key, list(values)) for key, values in self._series.items()]

    def _labels(self, key: tuple[str, ...]) -> list[str]:
        """The label set's pairs as text, names sorted (as prometheus-client writes them).
        Not kept between scrapes: a few hundred bytes for each of 20,000 series."""
        return [f'{name}="{_escape(value)}"'
                for name, value in sorted(zip(self.labelnames, key, strict=True))]

    def _header(self, name: str, kind: str) -> str:
        return f"# HELP {name} {_escape_help(self.documentation)}\n# TYPE {name} {kind}\n"

    def texts(self) -> Iterator[str]:
        """The family's exposition: its header, then each label set's lines."""
        raise NotImplementedError

    def collect(self) -> Iterator[Metric]:
        if not getattr(_WRITING_DIRECTLY, "active", False):
            yield self._filled()

    def _filled(self) -> Metric:
        """The family with a sample for each label set (prometheus-client's form)."""
        raise NotImplementedError

    def describe(self) -> list[Metric]:
        """The family without samples: the registry refuses a second metric of the name."""
        return [self._family()]

    def _family(self) -> Metric:
        raise NotImplementedError


class LabelledCounter(_Family):
    """A counter by label set: ``labels(*values).inc(amount)``; ``labels(*values)`` alone
    exports the label set at 0."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str],
                 registry: CollectorRegistry | None) -> None:
        super().__init__(name, documentation, labelnames, registry, width=1)

    def labels(self, *labelvalues: object) -> CounterSeries:
        return CounterSeries(self, self._key(labelvalues))

    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def _filled(self) -> Metric:
        family = self._family()
        for key, (value,) in self._snapshot():
            family.add_metric(key, value)
        return family

    def texts(self) -> Iterator[str]:
        name = self._family().name + "_total"
        yield self._header(name, "counter")
        for key, (value,) in self._snapshot():
            yield f"{name}{{{','.join(self._labels(key))}}} {_number(value)}\n"


class CounterSeries:
    """One label set of a LabelledCounter."""

    __slots__ = ("_counter", "_key")

    def __init__(self, counter: LabelledCounter, key: tuple[str, ...]) -> None:
        self._counter, self._key = counter, key

    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise ValueError(f"{self._counter.name}: a counter only goes up, not by {amount}")
        self._counter._add(self._key, 0, amount)


class LabelledHistogram(_Family):
    """A histogram by label set: ``labels(*values).observe(value)``; ``labels(*values)`` alone
    exports the label set with empty buckets. Each label set is its buckets' own counts (not
    cumulative: an observation adds to one) and, last, the sum of what was observed."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str],
                 registry: CollectorRegistry | None, buckets: Sequence[float]) -> None:
        bounds = sorted(float(b) for b in buckets)
        if not bounds or bounds[-1] != float("inf"):
            bounds.append(float("inf"))
        self.bounds = tuple(bounds)
        self._les = tuple(floatToGoString(b) for b in bounds)  # type: ignore[no-untyped-call]
        super().__init__(name, documentation, labelnames, registry, width=len(self.bounds) + 1)

    def labels(self, *labelvalues: object) -> HistogramSeries:
        return HistogramSeries(self, self._key(labelvalues))

    def _observe(self, key: tuple[str, ...], value: float) -> None:
        bucket = bisect_left(self.bounds, value)  # the first bound >= value: le is inclusive
        with self._lock:
            series = self._series[key]
            series[bucket] += 1
            series[-1] += value

    def _family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def _filled(self) -> Metric:
        family = self._family()
        for key, values in self._snapshot():
            cumulative, buckets = 0.0, []
            for le, count in zip(self._les, values, strict=False):
                cumulative += count
                buckets.append((le, cumulative))
            family.add_metric(key, buckets, values[-1])
        return family

    def texts(self) -> Iterator[str]:
        name = self.name
        yield self._header(name, "histogram")
        # Where `le` goes among the sorted label names.
        before = sum(1 for label in self.labelnames if label < "le")
        for key, values in self._snapshot():
            pairs = self._labels(key)
            labels = ",".join(pairs)
            head = "".join(f"{pair}," for pair in pairs[:before])
            tail = "".join(f",{pair}" for pair in pairs[before:])
            lines = []
            cumulative = 0.0
            for le, count in zip(self._les, values, strict=False):
                cumulative += count
                lines.append(f'{name}_bucket{{{head}le="{le}"{tail}}} {_number(cumulative)}\n')
            lines.append(f"{name}_count{{{labels}}} {_number(cumulative)}\n"
                         f"{name}_sum{{{labels}}} {_number(values[-1])}\n")
            yield "".join(lines)


class HistogramSeries:
    """One label set of a LabelledHistogram."""

    __slots__ = ("_histogram", "_key")

    def __init__(self, histogram: LabelledHistogram, key: tuple[str, ...]) -> None:
        self._histogram, self._key = histogram, key

    def observe(self, value: float) -> None:
        self._histogram._observe(self._key, value)
