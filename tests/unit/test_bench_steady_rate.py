"""The benchmarks' sustained rate leaves out the pipeline filling and draining, and nothing else."""

from __future__ import annotations

import math

from bench.common import steady_rate


def test_a_run_that_starts_slowly_and_drains_reports_the_rate_it_sustained_in_between() -> None:
    fill = [2.0 + i * 0.05 for i in range(20)]  # a slow start: 20 in the first second of results
    steady = [3.0 + i / 150 for i in range(1500)]  # then 150 a second for ten seconds
    drain = [13.0 + i * 0.1 for i in range(10)]  # and a tail
    rate = steady_rate(drain + steady + fill)  # in any order
    assert 148 < rate < 152  # first submission to last completion would say 1,530 / 14 s = 109


def test_too_few_completions_have_no_steady_rate() -> None:
    assert math.isnan(steady_rate([1.0, 2.0, 3.0]))
    assert math.isnan(steady_rate([5.0] * 20))  # all at one instant: no span to divide by
