"""Reading what the process's function-metrics recorder holds (tests only)."""

from tasks import metrics
from tasks.metrics import WindowAggregate


def recorded(name: str) -> WindowAggregate:
    """What the process recorder holds for ``name``, merged over windows into a fresh aggregate (the
    recorder's own stay untouched)."""
    found = [aggregate for aggregate in metrics.recorder.pending() if aggregate.function_name == name]
    names = sorted({aggregate.function_name for aggregate in metrics.recorder.pending()})
    assert found, f"nothing recorded for {name!r}; recorded: {names}"
    total = WindowAggregate(name, found[0].kind, found[0].window_start, found[0].window_seconds)
    for part in found:
        total.merge(part)
    return total
