"""The incident knowledge graph: links from each incident to what it is about, and reads over them.

Links (``incident_links``) are created automatically when incidents open (intake calls
:func:`incident_links_on_open`) and can be re-derived for one incident at any time
(:func:`incident_links_refresh`). Each link is an edge ``incident --relation--> target``:

- its AI system — ``affects`` (``incident.system``);
- its alerts — ``triggered_by`` (``incident.source_alert`` and the timeline's ``data.alert_id``);
- the review it was escalated from — ``escalated_from`` (``ReviewItem.escalated_incident`` and the
  timeline's ``data.review_item_id``);
- the policy involved — ``governed_by``: the auto-approval policy that decided such a review (there is
  no governance Policy model; the hitl policy is the one policy that takes decisions);
- past incidents — ``same_fingerprint`` (a recurrence, any age) or ``similar_to`` (same detection rule
  or same system, opened in the 90 days before it);
- its audit entries — ``recorded_in`` (``audit_log`` rows about ``incidents.incident:<id>``);
- the audit entries its alerts' evidence cites — ``evidenced_by`` (an event may name audit entries in
  ``attributes.audit_refs``: a governance-bypass detection cites the requests it is about).

Past incidents are capped at :data:`SIMILAR_LIMIT` per incident (recurrences first, then newest first).
Target ids are canonical strings (``str(uuid)``), so one index serves every target type.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.db import connection, transaction
from django.db.models import Q, QuerySet

from governance.models import AuditLog
from governance.selectors import scope_to_teams, uuid_or_none
from hitl.models import ReviewItem
from incidents.models import Incident, IncidentEvent, IncidentLink, LinkRelation, LinkTarget
from oversight.models import Alert, EventRaw

SIMILAR_WINDOW = timedelta(days=90)
SIMILAR_LIMIT = 10
# Incidents linked per round of queries, and rows per INSERT (DESIGN §3: chunks of ≤ 1,000).
LINK_CHUNK_SIZE = 1000
MAX_GRAPH_DEPTH = 3
LABEL_MAX_LENGTH = 300
AUDIT_OBJECT_TYPE = Incident._meta.label_lower  # how audit_record names an incident: "incidents.incident"

# The ``link`` closure of _link_chunk: (incident id, target type, target id, relation, label, data).
LinkFn = Callable[[Any, str, Any, str, str, dict], None]


# --- creating links ---------------------------------------------------------------------------------
def incident_links_on_open(*, incidents: Sequence[Incident]) -> int:
    """Link each incident to its system, alerts, escalated review and its policy, similar past
    incidents and its audit entries. Returns the number of links added.

    Set-based: eight queries per chunk of up to 1,000 incidents, whatever their number (plus one INSERT
    per 1,000 new links; fewer rows fit one INSERT on SQLite). Idempotent: links already present are
    skipped, and ``bulk_create(ignore_conflicts=True)`` on the ``incident_link_unique`` constraint
    absorbs a concurrent run (the count may then include links that run wrote first). Runs in the
    caller's transaction when there is one; writes no audit entry (links are derived data, rebuilt at
    will from rows that are audited themselves).
    """
    ids = list(dict.fromkeys(incident.pk for incident in incidents))
    added = 0
    with transaction.atomic():
        for start in range(0, len(ids), LINK_CHUNK_SIZE):
            added += _link_chunk(ids[start : start + LINK_CHUNK_SIZE])
    return added


def incident_links_refresh(*, incident_id: Any) -> int:
    """Re-derive the links of one incident, adding what is new since it opened (alerts attached,
    reviews escalated into it, audit entries written); never removes a link. ``Incident.DoesNotExist``
    when there is no such incident."""
    incident = Incident.objects.only("pk").get(pk=incident_id)
    return incident_links_on_open(incidents=[incident])


def incident_links_refresh_open(*, system_id: Any) -> int:
    """Re-derive the links of every open incident of one AI system (evidence merged into their alerts
    since they opened cites more audit entries). Returns the number of links added."""
    from incidents.models import OPEN_INCIDENT_STATUSES

    incidents = list(Incident.objects.filter(system_id=system_id, status__in=OPEN_INCIDENT_STATUSES).only("pk"))
    return incident_links_on_open(incidents=incidents) if incidents else 0


def _link_chunk(ids: list[Any]) -> int:
    incidents = list(Incident.objects.filter(pk__in=ids).select_related("system"))
    if not incidents:
        return 0
    ids = [incident.pk for incident in incidents]
    links: dict[tuple[Any, str, str, str], IncidentLink] = {}

    def link(incident_id: Any, target_type: str, target_id: Any, relation: str, label: str, data: dict) -> None:
        key = (incident_id, str(target_type), str(target_id), str(relation))
        links.setdefault(
            key,
            IncidentLink(
                incident_id=incident_id,
                target_type=target_type,
                target_id=str(target_id),
                relation=relation,
                label=label[:LABEL_MAX_LENGTH],
                data=data,
            ),
        )

    for incident in incidents:
        if incident.system is not None:
            link(incident.pk, LinkTarget.SYSTEM, incident.system_id, LinkRelation.AFFECTS,
                 f"AI system {incident.system.name}", {"risk_class": incident.system.risk_class})  # fmt: skip

    alert_ids, review_ids = _timeline_references(ids)
    for incident in incidents:
        if incident.source_alert_id is not None:
            alert_ids[incident.source_alert_id].add(incident.pk)
    _link_alerts(alert_ids, link)
    _link_reviews_and_policies(ids, review_ids, link)
    _link_similar_incidents(ids, link)
    _link_audit_entries(ids, link)
    return _insert_new(ids, links)


def _timeline_references(ids: list[Any]) -> tuple[dict[Any, set], dict[Any, set]]:
    """{alert id: incident ids} and {review item id: incident ids} named by the incidents' timelines
    (``alert_id`` on opened / alert_attached entries, ``review_item_id`` on review escalations)."""
    alert_ids: dict[Any, set] = defaultdict(set)
    review_ids: dict[Any, set] = defaultdict(set)
    rows = IncidentEvent.objects.filter(incident_id__in=ids).filter(
        Q(data__has_key="alert_id") | Q(data__has_key="review_item_id")
    )
    for incident_id, data in rows.values_list("incident_id", "data"):
        for key, bucket in (("alert_id", alert_ids), ("review_item_id", review_ids)):
            target = uuid_or_none((data or {}).get(key))
            if target is not None:
                bucket[target].add(incident_id)
    return alert_ids, review_ids


def _link_alerts(alert_ids: dict[Any, set], link: LinkFn) -> None:
    if not alert_ids:
        return
    evidence: dict[str, set] = defaultdict(set)  # event_id -> incident ids
    for alert in Alert.objects.filter(pk__in=list(alert_ids)).select_related("rule", "system"):
        label = f"alert {alert.rule.name} on {alert.system.name}"
        data = {"severity": alert.severity, "status": alert.status, "rule": alert.rule.name,
                "detected_at": _iso(alert.detected_at)}  # fmt: skip
        for incident_id in alert_ids[alert.pk]:
            link(incident_id, LinkTarget.ALERT, alert.pk, LinkRelation.TRIGGERED_BY, label, data)
        for event_id in alert.evidence_event_ids or ():
            evidence[str(event_id)] |= alert_ids[alert.pk]
    _link_cited_audit_entries(evidence, link)


def _link_cited_audit_entries(evidence: dict[str, set], link: LinkFn) -> None:
    """``evidenced_by`` links to the audit entries the evidence events cite (``attributes.audit_refs``).
    Two queries: the citing events among the evidence (most events cite nothing), then the entries."""
    if not evidence:
        return
    cited: dict[uuid.UUID, set] = defaultdict(set)
    events = EventRaw.objects.filter(event_id__in=list(evidence), attributes__has_key="audit_refs")
    for event_id, refs in events.values_list("event_id", "attributes__audit_refs"):
        for ref in refs if isinstance(refs, list) else ():
            entry_id = uuid_or_none(ref)
            if entry_id is not None:
                cited[entry_id] |= evidence[str(event_id)]
    if not cited:
        return
    for row in AuditLog.objects.filter(pk__in=list(cited)).values("id", "seq", "action", "actor", "at"):
        data = {"seq": row["seq"], "action": row["action"], "actor": row["actor"], "at": _iso(row["at"])}
        label = f"audit #{row['seq']} {row['action']} by {row['actor']}"
        for incident_id in cited[row["id"]]:
            link(incident_id, LinkTarget.AUDIT, row["id"], LinkRelation.EVIDENCED_BY, label, data)


def _link_reviews_and_policies(ids: list[Any], review_ids: dict[Any, set], link: LinkFn) -> None:
    wanted = set(ids)
    reviews = ReviewItem.objects.filter(Q(escalated_incident_id__in=ids) | Q(pk__in=list(review_ids)))
    for review in reviews.select_related("decided_by_policy"):
        incident_ids = set(review_ids.get(review.pk, ()))
        if review.escalated_incident_id in wanted:
            incident_ids.add(review.escalated_incident_id)
        data = {"review_type": review.review_type, "status": review.status, "decision_source": review.decision_source}
        policy = review.decided_by_policy
        for incident_id in incident_ids:
            link(incident_id, LinkTarget.REVIEW, review.pk, LinkRelation.ESCALATED_FROM, f"review {review.title}", data)
            if policy is not None:
                link(incident_id, LinkTarget.POLICY, policy.pk, LinkRelation.GOVERNED_BY,
                     f"auto-approval policy {policy.policy_name}", {"kind": "auto_approval", "mode": policy.mode,
                                                                    "review_item_id": str(review.pk)})  # fmt: skip


def _link_similar_incidents(ids: list[Any], link: LinkFn) -> None:
    pairs = _similar_incident_pairs(ids)
    if not pairs:
        return
    others = {
        row["id"]: row
        for row in Incident.objects.filter(pk__in={other for _, other, _ in pairs}).values(
            "id", "title", "severity", "status", "opened_at"
        )
    }
    for incident_id, other_id, same_fingerprint in pairs:
        other = others.get(other_id)
        if other is None:
            continue
        relation = LinkRelation.SAME_FINGERPRINT if same_fingerprint else LinkRelation.SIMILAR_TO
        data = {"severity": other["severity"], "status": other["status"], "opened_at": _iso(other["opened_at"])}
        link(incident_id, LinkTarget.INCIDENT, other_id, relation, f"incident {other['title']}", data)


def _similar_incident_pairs(ids: list[Any]) -> list[tuple[uuid.UUID, uuid.UUID, bool]]:
    """(incident, past incident, same fingerprint?) for every incident in ``ids``: at most
    SIMILAR_LIMIT each, recurrences (same fingerprint, any age) first, then incidents of the same
    detection rule or the same system opened in the SIMILAR_WINDOW before it; newest first.

    One statement. Candidates are ranked once per distinct (fingerprint | system | rule, opened_at)
    key rather than per incident: incidents opened together (an intake batch) share their opening time,
    so a batch of 500 on one busy rule costs one scan of that rule's recent incidents, not 500. Each
    key keeps its newest SIMILAR_LIMIT, which is enough: an incident's overall top SIMILAR_LIMIT is
    always within the union of its keys' top SIMILAR_LIMIT.
    """
    quote = connection.ops.quote_name
    incidents, alerts = quote(Incident._meta.db_table), quote(Alert._meta.db_table)
    window_start = _minus_days_sql("k.opened_at", SIMILAR_WINDOW.days)
    placeholders = ", ".join(["%s"] * len(ids))
    # Table names come from model metadata; the window is a module constant; values are bound.
    sql = f"""
        WITH targets AS (
            SELECT i.id, i.fingerprint, i.system_id, i.opened_at, a.rule_id
            FROM {incidents} i LEFT JOIN {alerts} a ON a.id = i.source_alert_id
            WHERE i.id IN ({placeholders})
        ),
        by_fingerprint AS (
            SELECT k.fingerprint, k.opened_at AS key_opened_at, o.id AS other_id, o.opened_at AS other_opened_at,
                   ROW_NUMBER() OVER (PARTITION BY k.fingerprint, k.opened_at
                                      ORDER BY o.opened_at DESC, o.id) AS position
            FROM (SELECT DISTINCT fingerprint, opened_at FROM targets WHERE fingerprint <> '') k
            JOIN {incidents} o ON o.fingerprint = k.fingerprint
            WHERE o.opened_at < k.opened_at
        ),
        by_system AS (
            SELECT k.system_id, k.opened_at AS key_opened_at, o.id AS other_id, o.opened_at AS other_opened_at,
                   ROW_NUMBER() OVER (PARTITION BY k.system_id, k.opened_at
                                      ORDER BY o.opened_at DESC, o.id) AS position
            FROM (SELECT DISTINCT system_id, opened_at FROM targets WHERE system_id IS NOT NULL) k
            JOIN {incidents} o ON o.system_id = k.system_id
            WHERE o.opened_at < k.opened_at AND o.opened_at >= {window_start}
        ),
        by_rule AS (
            SELECT k.rule_id, k.opened_at AS key_opened_at, o.id AS other_id, o.opened_at AS other_opened_at,
                   ROW_NUMBER() OVER (PARTITION BY k.rule_id, k.opened_at
                                      ORDER BY o.opened_at DESC, o.id) AS position
            FROM (SELECT DISTINCT rule_id, opened_at FROM targets WHERE rule_id IS NOT NULL) k
            JOIN {alerts} a ON a.rule_id = k.rule_id
            JOIN {incidents} o ON o.source_alert_id = a.id
            WHERE o.opened_at < k.opened_at AND o.opened_at >= {window_start}
        ),
        pairs AS (
            SELECT t.id AS incident_id, c.other_id, 1 AS same_fingerprint, c.other_opened_at
            FROM targets t JOIN by_fingerprint c ON c.fingerprint = t.fingerprint AND c.key_opened_at = t.opened_at
            WHERE c.position <= %s
            UNION ALL
            SELECT t.id, c.other_id, 0, c.other_opened_at
            FROM targets t JOIN by_system c ON c.system_id = t.system_id AND c.key_opened_at = t.opened_at
            WHERE c.position <= %s
            UNION ALL
            SELECT t.id, c.other_id, 0, c.other_opened_at
            FROM targets t JOIN by_rule c ON c.rule_id = t.rule_id AND c.key_opened_at = t.opened_at
            WHERE c.position <= %s
        ),
        best AS (
            SELECT incident_id, other_id, MAX(same_fingerprint) AS same_fingerprint,
                   MAX(other_opened_at) AS other_opened_at
            FROM pairs GROUP BY incident_id, other_id
        ),
        ranked AS (
            SELECT incident_id, other_id, same_fingerprint,
                   ROW_NUMBER() OVER (PARTITION BY incident_id
                                      ORDER BY same_fingerprint DESC, other_opened_at DESC, other_id) AS position
            FROM best
        )
        SELECT incident_id, other_id, same_fingerprint FROM ranked WHERE position <= %s
    """  # noqa: S608
    pk = Incident._meta.pk
    params = [pk.get_db_prep_value(value, connection) for value in ids] + [SIMILAR_LIMIT] * 4
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return [(uuid_or_none(incident_id), uuid_or_none(other_id), bool(same)) for incident_id, other_id, same in rows]


def _minus_days_sql(column: str, days: int) -> str:
    """``column - days`` in the database's own date arithmetic (``days`` is a module constant)."""
    if connection.vendor == "postgresql":
        return f"{column} - INTERVAL '{int(days)} days'"
    if connection.vendor == "sqlite":
        # Django stores SQLite datetimes as 'YYYY-MM-DD HH:MM:SS[.ffffff]' UTC text; datetime() keeps
        # that shape, so text comparison orders correctly.
        return f"datetime({column}, '-{int(days)} days')"
    raise ImproperlyConfigured(f"incident similarity needs PostgreSQL or SQLite, not {connection.vendor}")


def _link_audit_entries(ids: list[Any], link: LinkFn) -> None:
    entries = AuditLog.objects.filter(object_type=AUDIT_OBJECT_TYPE, object_id__in=[str(pk) for pk in ids])
    for row in entries.values("id", "seq", "action", "actor", "at", "object_id"):
        data = {"seq": row["seq"], "action": row["action"], "actor": row["actor"], "at": _iso(row["at"])}
        label = f"audit #{row['seq']} {row['action']} by {row['actor']}"
        incident_id = uuid_or_none(row["object_id"])
        if incident_id is not None:
            link(incident_id, LinkTarget.AUDIT, row["id"], LinkRelation.RECORDED_IN, label, data)


def _insert_new(ids: list[Any], links: dict[tuple[Any, str, str, str], IncidentLink]) -> int:
    existing = set(
        IncidentLink.objects.filter(incident_id__in=ids).values_list(
            "incident_id", "target_type", "target_id", "relation"
        )
    )
    new = [row for key, row in links.items() if key not in existing]
    IncidentLink.objects.bulk_create(new, batch_size=LINK_CHUNK_SIZE, ignore_conflicts=True)
    return len(new)


# --- reading the graph ------------------------------------------------------------------------------
def node_id(target_type: str, target_id: Any) -> str:
    """The graph id of a node: ``"<type>:<id>"``, e.g. ``"incident:6f1c…"``."""
    return f"{target_type}:{target_id}"


def incident_graph(*, incident: Incident, user: Any, depth: int = 1) -> dict[str, list[dict[str, Any]]]:
    """``{"nodes": [{id, type, label, data}], "edges": [{source, target, relation}]}`` around ``incident``.

    The incident is the first node. Depth 1: every link of the incident, and the incidents whose links
    point at it. Each further level (``depth`` is clamped to 1..MAX_GRAPH_DEPTH) follows incident ↔
    incident links one more hop. Incidents ``user`` may not see (team scoping) are left out, with their
    edges; audit entries only for those who may read the audit log. Reads only; a fixed number of
    queries per level. ``PermissionDenied`` if ``user`` may not see ``incident`` itself.
    """
    depth = max(1, min(int(depth), MAX_GRAPH_DEPTH))
    visible = scope_to_teams(Incident.objects.select_related("team", "system"), user)
    if not visible.filter(pk=incident.pk).exists():
        raise PermissionDenied("incident outside the caller's teams")
    show_audit = user.has_perm("governance.view_auditlog")
    root = node_id(LinkTarget.INCIDENT, incident.pk)
    nodes: dict[str, dict[str, Any]] = {root: _incident_node(incident)}
    edges: dict[tuple[str, str, str], dict[str, str]] = {}

    def edge(source: str, target: str, relation: str) -> None:
        edges.setdefault((source, target, relation), {"source": source, "target": target, "relation": relation})

    # What the incident itself links to, other than incidents (those are scoped, level by level below).
    own_links = IncidentLink.objects.filter(incident_id=incident.pk).exclude(target_type=LinkTarget.INCIDENT)
    for row in own_links.order_by("target_type", "relation", "created_at"):
        if row.target_type == LinkTarget.AUDIT and not show_audit:
            continue
        target = node_id(row.target_type, row.target_id)
        nodes.setdefault(target, {"id": target, "type": row.target_type, "label": row.label, "data": row.data})
        edge(root, target, row.relation)

    # Incident <-> incident links, both directions (a later recurrence points at its predecessor),
    # one hop per level; a neighbour the user may not see is dropped, and so is every edge to it.
    frontier, seen = {incident.pk}, {incident.pk}
    for _level in range(depth):
        pairs = _incident_edges_of(frontier)
        newcomers = {pk for source, target, _ in pairs for pk in (source, target)} - seen - {None}
        seen |= newcomers
        frontier = set()
        for other in visible.filter(pk__in=newcomers):
            nodes[node_id(LinkTarget.INCIDENT, other.pk)] = _incident_node(other)
            frontier.add(other.pk)
        for source, target, relation in pairs:
            source_id, target_id = node_id(LinkTarget.INCIDENT, source), node_id(LinkTarget.INCIDENT, target)
            if source_id in nodes and target_id in nodes:
                edge(source_id, target_id, relation)
        if not frontier:
            break
    return {"nodes": list(nodes.values()), "edges": list(edges.values())}


def _incident_edges_of(incident_ids: Iterable[Any]) -> list[tuple[Any, Any, str]]:
    """(source incident, target incident, relation) of every incident ↔ incident link from or to one
    of ``incident_ids`` (one query)."""
    ids = list(incident_ids)
    if not ids:
        return []
    rows = IncidentLink.objects.filter(
        Q(incident_id__in=ids) | Q(target_id__in=[str(pk) for pk in ids]), target_type=LinkTarget.INCIDENT
    ).values_list("incident_id", "target_id", "relation")
    return [(source, uuid_or_none(target), relation) for source, target, relation in rows.order_by("created_at")]


def _incident_node(incident: Incident) -> dict[str, Any]:
    return {
        "id": node_id(LinkTarget.INCIDENT, incident.pk),
        "type": LinkTarget.INCIDENT.value,
        "label": incident.title,
        "data": {
            "severity": incident.severity,
            "status": incident.status,
            "opened_at": _iso(incident.opened_at),
            "team": incident.team.name,
            "system": incident.system.name if incident.system_id else None,
        },
    }


def related_incidents(*, incident: Incident, user: Any, limit: int = 10) -> QuerySet[Incident]:
    """Incidents linked to ``incident`` in either direction (recurrences, similar ones) that ``user``
    may see, newest first, at most ``limit`` (the admin's "related incidents")."""
    rows = IncidentLink.objects.filter(
        Q(incident_id=incident.pk, target_type=LinkTarget.INCIDENT)
        | Q(target_type=LinkTarget.INCIDENT, target_id=str(incident.pk))
    ).values_list("incident_id", "target_id")
    related = {pk for source, target in rows for pk in (source, uuid_or_none(target))} - {incident.pk, None}
    queryset = Incident.objects.filter(pk__in=related).select_related("system", "team").order_by("-opened_at")
    return scope_to_teams(queryset, user)[:limit]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
