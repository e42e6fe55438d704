"""The backtest's walk-forward telemetry statistics (one read of the events, prefix sums) are the numbers
the production query computes at each ``as_of``, so the backtest and production cannot diverge."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from governance.services.predictive.features import DAY_WINDOW, LONG_WINDOW, SHORT_WINDOW, feature_table
from oversight.selectors import signal_window_stats, signal_window_stats_walk
from oversight.services.ingest import events_bulk_load
from oversight.validation import CleanEvent
from tests.factories import AISystemFactory

pytestmark = pytest.mark.django_db

AS_OF = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
WINDOWS = {"short": SHORT_WINDOW, "day": DAY_WINDOW, "long": LONG_WINDOW}
# SQLite's julianday() keeps milliseconds: the query's x (hours from until) is off by up to 1 ms there, the
# walk's is exact to the microsecond, so the regression sums agree to about 1e-9 relative, not to the last bit.
REL = 1e-6
SIGNALS = (("psi", "data_quality"), ("error_rate", "model_perf"), ("latency_p95_ms", "model_perf"))


def _history(systems, rng: np.random.Generator) -> None:
    events = []
    for system in systems:
        for signal, category in SIGNALS:
            hours = rng.uniform(0, 10 * 24, 400)
            for h in hours:
                severity = rng.choice(["info", "low", "medium", "high", "critical"])
                at = AS_OF - timedelta(hours=float(h))
                events.append(CleanEvent(uuid.uuid4(), system.pk, category, str(severity), signal,
                                         float(rng.normal(100, 40)), at, "{}", None, {}))  # fmt: skip
    # On the bounds of the windows of AS_OF: (until − w, until] excludes the lower bound, includes until.
    for at in (AS_OF, AS_OF - SHORT_WINDOW, AS_OF - DAY_WINDOW, AS_OF - LONG_WINDOW, AS_OF + timedelta(microseconds=1)):
        events.append(CleanEvent(uuid.uuid4(), systems[0].pk, "data_quality", "high", "psi", 7.5, at, "{}", None, {}))
    events_bulk_load(events=events, now=AS_OF + timedelta(days=1))


def test_the_walk_gives_the_production_query_s_statistics_at_every_step():
    systems = [AISystemFactory() for _ in range(3)]
    _history(systems, np.random.default_rng(7))
    ids = [s.pk for s in systems] + [uuid.uuid4()]  # one system without events
    untils = [AS_OF - timedelta(hours=h, minutes=m) for h, m in ((0, 0), (6, 0), (24, 0), (53, 17), (190, 5), (250, 0))]

    walk = signal_window_stats_walk(system_ids=ids, untils=untils, **WINDOWS)

    assert set(walk) == set(untils)
    for until in untils:
        expected = signal_window_stats(system_ids=ids, until=until, **WINDOWS)
        assert set(walk[until]) == set(expected), until
        assert expected or until == untils[-1]
        for key, stats in expected.items():
            got = dataclasses.asdict(walk[until][key])
            for name, value in dataclasses.asdict(stats).items():
                if value is None:
                    assert got[name] is None, (until, key, name)
                else:
                    assert got[name] == pytest.approx(value, rel=REL, abs=1e-6), (until, key, name)


def test_features_from_the_walk_equal_the_features_from_the_query():
    systems = [AISystemFactory() for _ in range(2)]
    _history(systems, np.random.default_rng(11))
    ids = [s.pk for s in systems]
    untils = [AS_OF - timedelta(hours=h) for h in (0, 30, 100)]
    walk = signal_window_stats_walk(system_ids=ids, untils=untils, **WINDOWS)

    for until in untils:
        queried = feature_table(system_ids=ids, as_of=until)
        walked = feature_table(system_ids=ids, as_of=until, window_stats=walk[until])
        assert np.abs(queried.matrix).sum() > 0
        np.testing.assert_allclose(walked.matrix, queried.matrix, rtol=REL, atol=1e-6)


def test_an_empty_walk():
    assert signal_window_stats_walk(system_ids=[], untils=[AS_OF], **WINDOWS) == {AS_OF: {}}
    assert signal_window_stats_walk(system_ids=[uuid.uuid4()], untils=[AS_OF], **WINDOWS) == {AS_OF: {}}
