"""The progress reporter coalesces, rate-limits, never blocks its caller and always ends last."""

from __future__ import annotations

import threading
import time

from kubedag.worker.progress import ProgressReporter, Update


class _Recorder:
    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.updates: list[Update] = []
        self.times: list[float] = []
        self.delay, self.fail = delay, fail

    def __call__(self, update: Update) -> None:
        time.sleep(self.delay)
        if self.fail:
            raise ConnectionError("api server down")
        self.updates.append(update)
        self.times.append(time.monotonic())


def test_burst_is_coalesced_to_the_latest_value_then_final() -> None:
    sink = _Recorder()
    reporter = ProgressReporter(sink, interval=0.3)
    for step in range(100):
        reporter.report(step / 100, f"step {step}")
        time.sleep(0.005)  # ~0.5 s in all
    reporter.close(final=(1.0, "done"))
    fractions = [u.fraction for u in sink.updates]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0
    assert fractions == sorted(fractions)
    assert 3 <= len(fractions) <= 5
    gaps = [b - a for a, b in zip(sink.times, sink.times[1:-1], strict=False)]
    assert all(gap >= 0.29 for gap in gaps)  # the final flush alone skips the wait
    assert reporter.sent == len(fractions) and reporter.dropped == 100 + 1 - len(fractions)


def test_a_slow_api_never_blocks_the_caller() -> None:
    reporter = ProgressReporter(_Recorder(delay=0.5), interval=0.0)
    started = time.monotonic()
    for step in range(1000):
        reporter.report(step / 1000)
    assert time.monotonic() - started < 0.2
    reporter.close()


def test_failures_are_counted_not_raised() -> None:
    reporter = ProgressReporter(_Recorder(fail=True), interval=0.0)
    reporter.report(0.5)
    reporter.close(final=(1.0, "done"))
    assert reporter.failed >= 1 and reporter.sent == 0


def test_closing_without_final_sends_the_pending_value() -> None:
    sink = _Recorder()
    reporter = ProgressReporter(sink, interval=10)
    reporter.report(0.1)
    reporter.report(0.4, "last")
    reporter.close()
    assert [(u.fraction, u.message) for u in sink.updates][-1] == (0.4, "last")
    reporter.report(0.9)  # after close: ignored
    assert threading.active_count() >= 1 and sink.updates[-1].fraction == 0.4
