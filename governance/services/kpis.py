"""The KPI scorecard and the 12 governance capabilities, computed from data on every call.

The plan's success criteria are declared once here (``KPIS``). Each engine measures its own figures in
its app's ``kpis.py`` module, registered with :func:`kpi_provider` / :func:`capability_check` and found
by autodiscovery; a figure or capability whose engine has not landed has no provider and shows as
*not measured* — never an invented number.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import cache
from typing import Any

from django.utils import timezone
from django.utils.module_loading import autodiscover_modules

logger = logging.getLogger(__name__)

MET, NOT_MET, NOT_MEASURED = "met", "not_met", "not_measured"
ENFORCED, NOT_ENFORCED = "enforced", "not_enforced"


@dataclass(frozen=True)
class KPISpec:
    code: str
    label: str
    baseline: str  # the plan's "current" column, for the before/after table
    target: str  # human text; providers check the live target (often from the config registry)


@dataclass(frozen=True)
class Measurement:
    """What a provider returns: the value, how to show it, whether it meets its target, and why."""

    value: float | int | None
    display: str
    met: bool
    detail: str = ""
    target: str | None = None  # overrides the spec's target text when it comes from config


@dataclass(frozen=True)
class KPIResult:
    code: str
    label: str
    baseline: str
    target: str
    value: float | int | None
    display: str
    status: str
    detail: str


@dataclass(frozen=True)
class CapabilityStatus:
    status: str  # enforced | not_enforced | not_measured
    evidence: str


KPIS: tuple[KPISpec, ...] = (
    KPISpec("events_ingested", "Events in events_raw", "0", "≥ 10,000"),
    KPISpec("hitl_backlog", "HITL backlog (pending reviews)", "546", "< 50"),
    KPISpec("open_incidents", "Open incidents", "218", "< 30"),
    KPISpec("mttd_critical", "MTTD (critical)", "N/A", "≤ 5 min"),
    KPISpec("mttr_critical", "MTTR (critical)", "N/A", "≤ 60 min"),
    KPISpec("rate_limit_coverage", "Rate limiting DB-backed", "Partial", "100%"),
    KPISpec("config_centralization", "Config centralization", "None", "100%"),
    KPISpec("function_observability", "Function observability", "None", "100%"),
    KPISpec("capabilities", "Governance capabilities enforced", "11/11", "12/12"),
)

_kpi_providers: dict[str, Callable[[], Measurement]] = {}
_capability_checks: dict[str, Callable[[], CapabilityStatus]] = {}
_response_times: list[Callable[[], list[dict[str, Any]]]] = []


def kpi_provider(code: str) -> Callable:
    """Register the function that measures KPI ``code`` (one per KPI)."""
    if code not in {spec.code for spec in KPIS}:
        raise ValueError(f"unknown KPI {code!r}")

    def register(func: Callable[[], Measurement]) -> Callable[[], Measurement]:
        _kpi_providers[code] = func
        return func

    return register


def capability_check(code: str) -> Callable:
    """Register the function that decides whether capability ``code`` is enforced right now."""

    def register(func: Callable[[], CapabilityStatus]) -> Callable[[], CapabilityStatus]:
        _capability_checks[code] = func
        return func

    return register


def response_times_provider(func: Callable[[], list[dict[str, Any]]]) -> Callable[[], list[dict[str, Any]]]:
    """Register the function that measures MTTA/MTTR per severity for the scorecard (the incident
    engine): rows of ``{severity, mtta_p50, mtta_p95, mttr_p50, mttr_p95, acknowledged, resolved}``
    in seconds (None where nothing was measured)."""
    _response_times[:] = [func]
    return func


def response_times() -> list[dict[str, Any]]:
    """MTTA and MTTR per severity, or an empty list when no engine measures them."""
    _discover()
    if not _response_times:
        return []
    try:
        return _response_times[0]()
    except Exception:  # a broken provider must not take the scorecard down
        logger.exception("response-time provider failed")
        return []


@cache
def _discover() -> None:
    autodiscover_modules("kpis")


def capability_statuses() -> dict[str, CapabilityStatus]:
    """Status of every capability in the ``Capability`` table, keyed by code."""
    from governance.models import Capability

    _discover()
    statuses = {}
    for code in Capability.objects.order_by("number").values_list("code", flat=True):
        check = _capability_checks.get(code)
        if check is None:
            statuses[code] = CapabilityStatus(NOT_MEASURED, "its engine is not installed yet")
            continue
        try:
            statuses[code] = check()
        except Exception as exc:  # one broken check must not take the scorecard down
            logger.exception("capability check failed", extra={"capability": code})
            statuses[code] = CapabilityStatus(NOT_MEASURED, f"check failed: {type(exc).__name__}")
    return statuses


def _capabilities_measurement(statuses: dict[str, CapabilityStatus]) -> Measurement:
    enforced = sum(1 for status in statuses.values() if status.status == ENFORCED)
    missing = [code for code, status in statuses.items() if status.status != ENFORCED]
    return Measurement(
        value=enforced,
        display=f"{enforced}/{len(statuses)}",
        met=bool(statuses) and not missing,
        detail=f"not enforced: {', '.join(missing)}" if missing else "all enforced",
        target=f"{len(statuses)}/{len(statuses)}",
    )


def _not_measured(spec: KPISpec, detail: str) -> KPIResult:
    return KPIResult(spec.code, spec.label, spec.baseline, spec.target, None, "not measured", NOT_MEASURED, detail)


def kpi_scorecard(statuses: dict[str, CapabilityStatus] | None = None) -> list[KPIResult]:
    """Every KPI of the plan, measured now."""
    _discover()
    statuses = capability_statuses() if statuses is None else statuses
    results = []
    for spec in KPIS:
        if spec.code == "capabilities":
            provider = lambda: _capabilities_measurement(statuses)  # noqa: E731
        else:
            provider = _kpi_providers.get(spec.code)
        if provider is None:
            results.append(_not_measured(spec, "the engine that produces this figure has not landed yet"))
            continue
        try:
            m = provider()
        except Exception as exc:
            logger.exception("KPI provider failed", extra={"kpi": spec.code})
            results.append(_not_measured(spec, f"measurement failed: {type(exc).__name__}"))
            continue
        status = NOT_MEASURED if m.value is None else (MET if m.met else NOT_MET)
        results.append(
            KPIResult(
                spec.code, spec.label, spec.baseline, m.target or spec.target, m.value, m.display, status, m.detail
            )
        )
    return results


def kpi_report() -> dict[str, Any]:
    """The scorecard and capabilities as one JSON-ready document (API, CLI, admin, evidence)."""
    from governance.models import Capability

    statuses = capability_statuses()
    names = dict(Capability.objects.values_list("code", "name"))
    numbers = dict(Capability.objects.values_list("code", "number"))
    items = [
        {"number": numbers[code], "code": code, "name": names[code], **asdict(status)}
        for code, status in statuses.items()
    ]
    return {
        "generated_at": timezone.now().isoformat(),
        "kpis": [asdict(result) for result in kpi_scorecard(statuses)],
        "capabilities": {
            "enforced": sum(1 for item in items if item["status"] == ENFORCED),
            "total": len(items),
            "items": items,
        },
        "response_times": response_times(),
    }
