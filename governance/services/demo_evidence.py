"""The golden demo's evidence package: export a finished run as a zip, and verify one.

Contents (all UTF-8 JSON unless said otherwise)::

    step_log.json      the run (scenario, mode, seed, times) and every step's result and outcome
    kpis_before.json   the KPI scorecard and capabilities before the run
    kpis_after.json    … and after it
    alerts.json        alerts the run created or changed (its time window)
    reviews.json       review items it created or decided
    incidents.json     incidents it opened or moved
    decisions.json     review decisions it took
    audit_log.jsonl    the run's slice of the audit chain, one row per line (seq, prev_hash, hash …)
    config.json        every config key with the version in force at the end of the run
    report.html        a self-contained report for people
    manifest.json      SHA-256 of every other file, the chain slice's anchor and head, run id and seed

The archive comment carries the manifest's own SHA-256, so a change to any byte of any file — the
manifest included — is named by :func:`evidence_verify`. The chain is re-verified row by row exactly as
``governance.services.audit`` computes it: a row altered and its file hash "fixed" in the manifest still
fails (its hash, or the next row's ``prev_hash``, or the manifest's head no longer match).
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Q
from django.template.loader import render_to_string
from django.utils import timezone

from governance.choices import AuditAction
from governance.models import DemoRun
from governance.services.audit import audit_record, chain_link_break, compute_hash

FORMAT = "vigil-demo-evidence/1"
DEFAULT_EVIDENCE_DIR = "demo-evidence"
MANIFEST = "manifest.json"
AUDIT_FILE = "audit_log.jsonl"
COMMENT_PREFIX = b"vigil-evidence manifest sha256="
AUDIT_FIELDS = ("id", "seq", "at", "actor", "actor_type", "action", "object_type", "object_id", "data", "prev_hash",
                "hash")  # fmt: skip


class EvidenceNotReady(Exception):
    """The run has not finished yet (pending or running)."""


@dataclass(frozen=True)
class EvidencePackage:
    path: Path
    sha256: str
    files: dict[str, str]


@dataclass(frozen=True)
class EvidenceVerification:
    ok: bool
    problem: str = ""  # names the first bad file or audit row
    files: int = 0
    audit_rows: int = 0
    head_hash: str = ""

    def describe(self) -> str:
        if self.ok:
            return f"evidence OK: {self.files} files, {self.audit_rows} audit rows, chain head {self.head_hash[:16]}…"
        return f"evidence INVALID: {self.problem}"


def _json(value: Any) -> bytes:
    return json.dumps(value, cls=DjangoJSONEncoder, indent=2, ensure_ascii=False, sort_keys=True).encode()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _window(run: DemoRun) -> tuple[datetime, datetime]:
    return run.started_at or run.created_at, run.finished_at or timezone.now()


def _created_or_changed(model, run: DemoRun, *date_fields: str):
    start, end = _window(run)
    q = Q()
    for name in ("created_at", "updated_at", *date_fields):
        q |= Q(**{f"{name}__gte": start, f"{name}__lte": end})
    return model.objects.filter(q)


def _rows(queryset, fields: list[str]) -> list[dict[str, Any]]:
    return list(queryset.order_by("created_at", "id").values(*fields))


def evidence_documents(run: DemoRun) -> dict[str, bytes]:
    """Every file of the package but the manifest, as bytes."""
    from config.models import PlatformConfig
    from governance.services.demo import audit_slice, demo_run_representation
    from hitl.models import Decision, ReviewItem
    from incidents.models import Incident
    from oversight.models import Alert

    step_log = demo_run_representation(run)
    audit_rows = [
        {**row, "at": row["at"].astimezone(UTC).isoformat(timespec="microseconds")}
        for row in audit_slice(run).values(*AUDIT_FIELDS)
    ]
    documents = {
        "step_log.json": _json(step_log),
        "kpis_before.json": _json(run.kpis_before),
        "kpis_after.json": _json(run.kpis_after),
        "alerts.json": _json(
            _rows(
                _created_or_changed(Alert, run, "detected_at", "resolved_at"),
                [
                    "id",
                    "fingerprint",
                    "rule__name",
                    "system__name",
                    "status",
                    "severity",
                    "first_event_at",
                    "detected_at",
                    "resolved_at",
                    "count",
                    "labels",
                ],  # fmt: skip
            )
        ),
        "reviews.json": _json(
            _rows(
                _created_or_changed(ReviewItem, run, "decided_at"),
                [
                    "id",
                    "review_type",
                    "title",
                    "system__name",
                    "severity",
                    "status",
                    "decision",
                    "decision_source",
                    "decided_by__username",
                    "decided_at",
                    "suggested_decision",
                    "assist_confidence",
                    "risk_score",
                    "sla_due_at",
                    "escalated_incident",
                ],  # fmt: skip
            )
        ),
        "incidents.json": _json(
            _rows(
                _created_or_changed(Incident, run, "opened_at", "acknowledged_at", "resolved_at", "closed_at"),
                [
                    "id",
                    "title",
                    "system__name",
                    "team__slug",
                    "severity",
                    "status",
                    "opened_at",
                    "acknowledged_at",
                    "resolved_at",
                    "closed_at",
                    "escalation_level",
                    "resolution_reason",
                    "rca_completed_at",
                    "serious",
                ],  # fmt: skip
            )
        ),
        "decisions.json": _json(
            _rows(
                Decision.objects.filter(decided_at__gte=_window(run)[0], decided_at__lte=_window(run)[1]),
                [
                    "id",
                    "item",
                    "decision",
                    "source",
                    "policy__policy_name",
                    "actor__username",
                    "confidence",
                    "risk_score",
                    "decided_at",
                ],  # fmt: skip
            )
        ),
        AUDIT_FILE: "".join(
            json.dumps(row, cls=DjangoJSONEncoder, ensure_ascii=False, sort_keys=True) + "\n" for row in audit_rows
        ).encode(),
        "config.json": _json(
            list(PlatformConfig.objects.order_by("key").values("key", "category", "version", "value", "updated_at"))
        ),
    }
    documents["report.html"] = render_to_string(
        "governance/demo_evidence_report.html",
        {
            "run": step_log,
            "kpis_before": {row["code"]: row for row in (run.kpis_before or {}).get("kpis", [])},
            "kpis_after": (run.kpis_after or {}).get("kpis", []),
            "proof": next(
                (r.get("measured", {}).get("proof") for r in run.step_results if r["key"] == "kpi_proof"), None
            ),
            "audit_rows": len(audit_rows),
            "head_hash": audit_rows[-1]["hash"] if audit_rows else "",
            "files": {name: _sha256(data) for name, data in documents.items()},
            "generated_at": timezone.now(),
        },
    ).encode()
    return documents


def evidence_build(run: DemoRun) -> tuple[bytes, dict[str, str]]:
    """The package as zip bytes and its manifest's file hashes."""
    if not run.is_final:
        raise EvidenceNotReady(f"demo run {run.pk} is {run.status}; export it when it has finished")
    documents = evidence_documents(run)
    audit_lines = [json.loads(line) for line in documents[AUDIT_FILE].decode().splitlines() if line]
    files = {name: _sha256(data) for name, data in sorted(documents.items())}
    manifest = {
        "format": FORMAT,
        "run": {
            "id": str(run.pk),
            "scenario": run.scenario.scenario_name,
            "mode": run.mode,
            "seed": run.seed,
            "status": run.status,
        },  # fmt: skip
        "created_at": timezone.now().isoformat(),
        "files": files,
        "audit_chain": {
            "first_seq": audit_lines[0]["seq"] if audit_lines else None,
            "last_seq": audit_lines[-1]["seq"] if audit_lines else None,
            "rows": len(audit_lines),
            "anchor_prev_hash": audit_lines[0]["prev_hash"] if audit_lines else "",
            "head_hash": audit_lines[-1]["hash"] if audit_lines else "",
        },
    }
    manifest_bytes = _json(manifest)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in sorted(documents.items()):
            archive.writestr(name, data)
        archive.writestr(MANIFEST, manifest_bytes)
        archive.comment = COMMENT_PREFIX + _sha256(manifest_bytes).encode()
    return buffer.getvalue(), files


def evidence_export(*, run: DemoRun, destination: Path | str, actor: Any = None) -> EvidencePackage:
    """Write the package to ``destination`` (a ``.zip`` path, or a directory that gets
    ``demo-<run>-<mode>.zip``), record its path and SHA-256 on the run and audit
    ``demo.evidence_exported``. Raises ``EvidenceNotReady`` while the run is active."""
    data, files = evidence_build(run)
    destination = Path(destination)
    path = destination if destination.suffix == ".zip" else destination / f"demo-{run.pk.hex[:8]}-{run.mode}.zip"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    digest = _sha256(data)
    DemoRun.objects.filter(pk=run.pk).update(evidence_sha256=digest, evidence_path=str(path), updated_at=timezone.now())
    run.evidence_sha256, run.evidence_path = digest, str(path)
    audit_record(
        action=AuditAction.DEMO_EVIDENCE_EXPORTED,
        actor=actor,
        target=run,
        data={"sha256": digest, "path": str(path), "files": files},
    )
    return EvidencePackage(path=path, sha256=digest, files=files)


# --- verification -------------------------------------------------------------------------------------
def evidence_verify(source: Path | str | bytes) -> EvidenceVerification:
    """Re-check a package: the manifest against the archive comment, every file against the manifest
    (none missing, none extra), then the audit slice's chain row by row. Reads nothing from the
    database: an auditor can run it anywhere Vigil is installed."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source)
    except (OSError, zipfile.BadZipFile) as exc:
        return EvidenceVerification(False, f"not a readable zip archive: {exc}")
    with archive:
        names = set(archive.namelist())
        if MANIFEST not in names:
            return EvidenceVerification(False, f"{MANIFEST}: missing")
        manifest_bytes = archive.read(MANIFEST)
        comment = archive.comment
        if not comment.startswith(COMMENT_PREFIX) or comment[len(COMMENT_PREFIX) :].decode(errors="replace") != _sha256(
            manifest_bytes
        ):
            return EvidenceVerification(False, f"{MANIFEST}: its SHA-256 does not match the archive's seal (altered)")
        try:
            manifest = json.loads(manifest_bytes)
            files: dict[str, str] = manifest["files"]
            chain = manifest["audit_chain"]
        except (ValueError, KeyError, TypeError) as exc:
            return EvidenceVerification(False, f"{MANIFEST}: unreadable ({exc})")
        for name in sorted(names - set(files) - {MANIFEST}):
            return EvidenceVerification(False, f"{name}: not listed in the manifest (added)")
        for name, expected in sorted(files.items()):
            if name not in names:
                return EvidenceVerification(False, f"{name}: listed in the manifest but missing")
            if _sha256(archive.read(name)) != expected:
                return EvidenceVerification(False, f"{name}: SHA-256 does not match the manifest (altered)")
        problem, rows = _verify_chain(archive.read(AUDIT_FILE) if AUDIT_FILE in names else b"", chain)
        if problem:
            return EvidenceVerification(False, problem, files=len(files), audit_rows=rows)
    return EvidenceVerification(True, files=len(files), audit_rows=rows, head_hash=chain.get("head_hash", ""))


def _verify_chain(data: bytes, chain: dict[str, Any]) -> tuple[str, int]:
    prev_hash, expected_seq, count = chain.get("anchor_prev_hash", ""), chain.get("first_seq"), 0
    last_hash = ""
    for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), start=1):
        where = f"{AUDIT_FILE} line {number}"
        try:
            row = json.loads(line)
            seq, at = row["seq"], datetime.fromisoformat(row["at"])
            recomputed = compute_hash(
                prev_hash=row["prev_hash"],
                seq=seq,
                at=at,
                actor=row["actor"],
                actor_type=row["actor_type"],
                action=row["action"],
                object_type=row["object_type"],
                object_id=row["object_id"],
                data=row["data"],
            )
        except (ValueError, KeyError, TypeError) as exc:
            return f"{where}: unreadable audit row ({exc})", count
        reason = chain_link_break(
            seq=seq,
            prev_hash=row["prev_hash"],
            stored_hash=row["hash"],
            recomputed_hash=recomputed,
            expected_seq=expected_seq,
            expected_prev_hash=prev_hash,
        )
        if reason:
            return f"{where} (seq={seq}): {reason}", count
        prev_hash, last_hash, expected_seq, count = row["hash"], row["hash"], seq + 1, count + 1
    if count != chain.get("rows"):
        return f"{AUDIT_FILE}: {count} rows, the manifest says {chain.get('rows')} (truncated)", count
    if last_hash != chain.get("head_hash", ""):
        return f"{AUDIT_FILE}: the last row's hash is not the manifest's chain head", count
    return "", count
