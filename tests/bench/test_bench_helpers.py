"""The benchmarks' arithmetic and bookkeeping: percentiles, rates, tables, the load test's verdict."""

from __future__ import annotations

import math

import pytest

from bench import _common as b
from bench.load_test import capacity, schedule, step_table


def test_percentile_interpolates_between_the_closest_ranks() -> None:
    assert b.percentile([4, 1, 3, 2], 50) == 2.5
    assert b.percentile([4, 1, 3, 2], 0) == 1
    assert b.percentile([4, 1, 3, 2], 100) == 4
    assert b.percentile(list(range(1, 101)), 99) == pytest.approx(99.01)
    assert b.percentile(list(range(1, 101)), 95) == pytest.approx(95.05)


def test_percentile_of_a_single_value_is_that_value() -> None:
    assert b.percentile([0.25], 99) == 0.25


@pytest.mark.parametrize(("values", "q"), [([], 50), ([1.0], -1), ([1.0], 101)])
def test_percentile_refuses_no_values_and_impossible_ranks(values: list[float], q: float) -> None:
    with pytest.raises(ValueError):
        b.percentile(values, q)


def test_a_summary_rate_is_the_count_over_the_measured_seconds() -> None:
    summary = b.summarize("rebound", [0.010, 0.020, 0.030, 0.040], seconds=2.0, errors=1)
    assert summary.count == 4
    assert summary.per_second == 2.0
    assert summary.p50 == pytest.approx(0.025)
    assert summary.errors == 1


def test_a_summary_of_nothing_has_no_rate_and_no_percentiles() -> None:
    summary = b.summarize("rebound", [], seconds=5.0)
    assert summary.per_second == 0
    assert math.isnan(summary.p99)
    assert b.summarize("x", [1.0], seconds=0).per_second == 0


def test_the_table_shows_rates_milliseconds_and_the_ratio_to_each_reference() -> None:
    rows = [
        b.summarize("ceiling", [0.001] * 400, seconds=1.0),
        b.summarize("pylti1p3", [0.010] * 100, seconds=1.0),
        b.summarize("rebound", [0.020] * 50, seconds=1.0, errors=2),
    ]
    table = b.format_table("launches", rows, ["ceiling", "pylti1p3"]).splitlines()
    assert table[0].split() == ["target", "launches/s", "p50", "ms", "p95", "ms", "p99", "ms", "errors",
                                "×", "ceiling", "×", "pylti1p3"]
    assert table[2].split() == ["ceiling", "400.0", "1.0", "1.0", "1.0", "0", "1.00", "4.00"]
    assert table[4].split() == ["rebound", "50.0", "20.0", "20.0", "20.0", "2", "0.12", "0.50"]


def test_the_table_shows_a_dash_for_a_reference_that_did_not_run() -> None:
    table = b.format_table("answers", [b.summarize("rebound", [0.01], seconds=1.0)], ["ceiling"])
    assert table.splitlines()[2].split()[-1] == "-"
    assert math.isnan(b.ratio(1.0, 0.0))


def _step(users: int, p99: float, failures: int = 0) -> dict[str, float]:
    return {"users": users, "requests": users * 10, "seconds": 100.0, "failures": failures,
            "p50": p99 / 4, "p95": p99 / 2, "p99": p99}


def test_the_load_test_holds_the_last_step_before_p99_first_crosses_the_limit() -> None:
    steps = [_step(100, 120), _step(200, 250), _step(400, 310), _step(600, 290)]
    assert capacity(steps, 300) == 200


def test_a_step_with_failures_does_not_count_as_held() -> None:
    assert capacity([_step(100, 100), _step(200, 150, failures=3)], 300) == 100
    assert capacity([_step(100, 400)], 300) is None
    assert capacity([], 300) is None


def test_the_step_table_gives_each_step_its_rate_and_verdict() -> None:
    lines = step_table([_step(100, 120), _step(200, 350)], 300).splitlines()
    assert lines[2].split() == ["100", "10.0", "30", "60", "120", "0", "yes"]
    assert lines[3].split() == ["200", "20.0", "88", "175", "350", "0", "no"]


def test_the_browser_keeps_partitioned_cookies_and_forgets_deleted_ones() -> None:
    browser = b.Browser(port=1)
    browser._remember([
        "rebound_session=abc; Secure; HttpOnly; Path=/; SameSite=None; Partitioned",
        "rebound_lti_1=s1; Max-Age=600; Secure; Path=/; SameSite=None; Partitioned",
    ])
    assert browser.cookies == {"rebound_session": "abc", "rebound_lti_1": "s1"}
    browser._remember(['rebound_lti_1=""; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/'])
    assert browser.cookies == {"rebound_session": "abc"}


def test_urls_from_redirects_are_read_as_a_browser_would() -> None:
    location = "https://lms.example/auth?state=s%2B1&nonce=n&scope=openid"
    assert b.query_of(location) == {"state": "s+1", "nonce": "n", "scope": "openid"}
    assert b.path_of("https://rebound.example/lti/landing?launch=t") == "/lti/landing?launch=t"
    assert b.path_of("/p/3/") == "/p/3/"


def test_each_load_step_is_measured_only_once_its_learners_have_arrived_and_settled() -> None:
    windows = schedule([25, 50, 100], spawn_rate=5, hold=45, settle=10)
    assert windows == [(15.0, 60.0), (75.0, 120.0), (140.0, 185.0)]
