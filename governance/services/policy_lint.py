"""The AI-governance policy linter: syntax, schema, thresholds, rule logic, coverage and regulatory alignment.

A policy (``apiVersion: vigil/v1``, ``kind: Policy``; JSON Schema in ``governance/schemas/policy.schema.json``)
is an ordered list of rules; the FIRST rule whose conditions all hold decides, ``default_action`` applies
when none does. :func:`policy_lint` reads YAML or JSON text (or an already-parsed document), finds the line
and column of the JSON path each finding is about (``policy_source``), and reports findings in classes with
stable ids (``VGL001`` …, see :data:`FINDING_CLASSES`) at three levels — ``error`` (the policy is wrong or
will not do what it says), ``warning`` (probably a mistake), ``info`` (worth knowing). The report renders as
JSON and SARIF 2.1.0.

Guarantees: never raises on any input (hostile input becomes a ``syntax``, ``schema`` or ``document-limit``
finding); bounded work (document size, node count, nesting depth, rule count, pairwise comparisons and
findings are capped, and a cap that is hit is itself reported); pure (no database, no I/O besides reading
the packaged schema once). Rule pairs are compared only within groups that can interact (same subjects;
indexed by attribute value), so a 1,000-rule policy lints in well under 200 ms.
"""

from __future__ import annotations

import difflib
import gc
import json
import logging
import math
import re
import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import yaml
from django.utils import timezone
from jsonschema import Draft202012Validator

from governance.services import policy_format, policy_source

__all__ = [
    "FINDING_CLASSES",
    "LINTER_NAME",
    "LINTER_VERSION",
    "MAX_DOCUMENT_BYTES",
    "MAX_RULES",
    "Finding",
    "FindingClass",
    "LintReport",
    "policy_lint",
    "policy_schema",
    "sarif_log",
]

logger = logging.getLogger(__name__)

LINTER_NAME = "vigil-policy-lint"
LINTER_VERSION = "1.0.0"
SCHEMA_FILE = Path(__file__).resolve().parent.parent / "schemas" / "policy.schema.json"

# Work bounds. A document over a bound is reported (``document-limit``), never processed further.
MAX_DOCUMENT_BYTES = 1_000_000
MAX_RULES = 5_000
MAX_NODES = 250_000  # YAML/JSON nodes visited, aliases counted every time they are followed
MAX_DEPTH = 64
MAX_FINDINGS = 2_000
MAX_SCHEMA_ERRORS = 200
MAX_PAIR_CHECKS = 400_000  # rule-pair comparisons for shadowing, conflicts and overlaps

ERROR, WARNING, INFO = "error", "warning", "info"
LEVELS = (ERROR, WARNING, INFO)
_SARIF_LEVEL = {ERROR: "error", WARNING: "warning", INFO: "note"}

CATEGORIES = ("data_quality", "model_perf", "fairness", "security", "compliance")
SEVERITIES = ("critical", "high", "medium", "low", "info")
RISK_CLASSES = ("prohibited", "high", "limited", "minimal")
ENTITY_TYPES = ("model", "system", "dataset")
RESTRICTIVE_ACTIONS = frozenset({"deny", "require_review", "escalate"})
_ATTRIBUTE_UNIVERSE = {"risk_class": frozenset(RISK_CLASSES), "entity_type": frozenset(ENTITY_TYPES)}


# --- finding classes -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FindingClass:
    """One kind of finding: a stable id, a slug name, its default level, and what it means."""

    code: str
    name: str
    level: str
    summary: str
    help: str
    tags: tuple[str, ...] = ()


FINDING_CLASSES: dict[str, FindingClass] = {
    fc.name: fc
    for fc in (
        FindingClass(
            "VGL001", "syntax", ERROR, "The text is not valid YAML or JSON.",
            "Fix the text at the reported line and column. Keys must be strings (quote yes/no/on/off), each key "
            "appears once per mapping, numbers are finite, and only standard YAML tags are used.",
            ("syntax",),
        ),
        FindingClass(
            "VGL002", "document-limit", ERROR, "The document exceeds a linter bound (size, nesting, nodes, rules).",
            f"A policy is at most {MAX_DOCUMENT_BYTES:,} bytes, {MAX_RULES:,} rules and {MAX_DEPTH} levels deep; "
            "split a larger one into several policies.",
            ("limits",),
        ),
        FindingClass(
            "VGL003", "schema", ERROR, "The document does not match the policy JSON Schema.",
            "See GET /api/v1/policies/schema (governance/schemas/policy.schema.json) for the format.",
            ("schema",),
        ),
        FindingClass(
            "VGL010", "duplicate-id", ERROR, "Two rules share one id.",
            "Rule ids identify a rule in decisions, audit entries and CI/CD gate answers; make each unique.",
            ("rules",),
        ),
        FindingClass(
            "VGL020", "threshold-range", ERROR, "A threshold lies outside the range its unit allows.",
            "ratio: 0-1; percent: 0-100; count, ms and seconds: not negative.",
            ("thresholds",),
        ),
        FindingClass(
            "VGL021", "unit-mismatch", WARNING, "A threshold's unit differs from the unit Vigil measures it in.",
            "Vigil compares raw values: state the threshold in the subject's own unit (e.g. accuracy is a ratio: "
            "write 0.9, not 90 percent).",
            ("thresholds", "units"),
        ),
        FindingClass(
            "VGL022", "threshold-order", ERROR, "The warning level is not less severe than the critical level.",
            "direction 'above' (higher is worse): warning < critical; direction 'below': warning > critical.",
            ("thresholds",),
        ),
        FindingClass(
            "VGL023", "non-monotonic-levels", ERROR,
            "Graded levels, or rules of rising severity on one subject, are not ordered by severity.",
            "info, warning and critical must be strictly ordered in the threshold's direction; a more severe rule "
            "on the same subject must have the stricter threshold.",
            ("thresholds",),
        ),
        FindingClass(
            "VGL024", "unknown-subject", INFO, "A metric, suite or signal that Vigil does not produce.",
            "Known signals are the oversight.thresholds.* config keys; known metrics are the gateway's evaluation "
            "suites. A near-miss of a known name is a warning (a typo never matches any event).",
            ("subjects",),
        ),
        FindingClass(
            "VGL030", "conflicting-rules", ERROR, "Rules with the same conditions decide opposite actions.",
            "The first rule always wins, so the later one is dead and the policy says two things; keep one.",
            ("logic",),
        ),
        FindingClass(
            "VGL031", "overlapping-ranges", WARNING,
            "Numeric ranges on the same subject overlap while the rules decide opposite actions.",
            "For values in the overlap the earlier rule decides; tighten one range or reorder deliberately.",
            ("logic",),
        ),
        FindingClass(
            "VGL032", "shadowed-rule", WARNING, "An earlier rule matches everything this rule matches.",
            "With first-match evaluation this rule never decides anything; move it up or narrow the earlier rule.",
            ("logic",),
        ),
        FindingClass(
            "VGL033", "unreachable-rule", WARNING, "The rule's conditions contradict each other or the scope.",
            "No system and no value can satisfy all conditions (e.g. x > 0.9 and x < 0.5, or attribute in []).",
            ("logic",),
        ),
        FindingClass(
            "VGL040", "coverage-gap", INFO, "A category has no rule at some severities.",
            "The coverage matrix (category x severity) lists the rules of each cell; empty cells are gaps.",
            ("coverage",),
        ),
        FindingClass(
            "VGL041", "regulatory-gap", WARNING,
            "A policy that applies to high-risk systems does not cover an EU AI Act obligation.",
            "High-risk systems need human oversight (Art. 14), logging (Art. 12), accuracy and robustness "
            "(Art. 15) and serious-incident reporting (Art. 73); data governance (Art. 10) is reported as info.",
            ("regulatory", "eu_ai_act"),
        ),
        FindingClass(
            "VGL042", "unknown-reference", WARNING, "A regulatory reference that does not exist.",
            "EU AI Act: Art. 1-113, Annex I-XIII; NIST AI RMF: GOVERN/MAP/MEASURE/MANAGE and their subcategories; "
            "ISO/IEC 42001: clauses 4-10 and Annex A controls A.2-A.10.",
            ("regulatory",),
        ),
        FindingClass(
            "VGL043", "prohibited-practice-allowed", ERROR,
            "The policy allows systems of the prohibited risk class (EU AI Act Art. 5).",
            "Prohibited AI practices may not be placed on the market or used; deny them.",
            ("regulatory", "eu_ai_act"),
        ),
        FindingClass(
            "VGL099", "internal-error", ERROR, "The linter failed on this document (a bug; it has been logged).",
            "Report the document to the Vigil maintainers.",
            ("internal",),
        ),
    )
}  # fmt: skip


# --- findings and the report -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Location:
    path: str
    line: int | None = None
    column: int | None = None
    rule_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "line": self.line, "column": self.column, "rule_id": self.rule_id}


@dataclass(frozen=True)
class Finding:
    """One finding. ``path`` is dotted (``spec.rules.3.when.0.value``); ``line``/``column`` are 1-based
    (None when the document came without text); ``rule_id`` is the policy rule's id; ``references`` the
    regulatory provisions a regulatory finding cites (``article`` is the EU AI Act article, e.g. "Art. 14")."""

    code: str
    name: str
    level: str
    message: str
    path: str = ""
    line: int | None = None
    column: int | None = None
    rule_id: str | None = None
    references: tuple[dict[str, str], ...] = ()
    article: str | None = None
    hint: str | None = None
    related: tuple[Location, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "name": self.name,
            "level": self.level,
            "message": self.message,
            "path": self.path,
            "line": self.line,
            "column": self.column,
            "rule_id": self.rule_id,
            "references": [dict(ref) for ref in self.references],
            "article": self.article,
            "hint": self.hint,
            "related": [location.as_dict() for location in self.related],
        }


@dataclass
class LintReport:
    """The outcome of one lint: findings sorted by position, counts per level, ``ok`` (no errors), the
    coverage matrix (``{category: {severity: [rule ids]}}``) and the policy's id and rule count if known."""

    filename: str
    findings: list[Finding]
    coverage: dict[str, dict[str, list[str]]]
    policy_id: str | None
    rule_count: int
    linted_at: datetime
    truncated: bool = False
    # The parsed document as the linter read it (plain JSON data; None when the text did not parse). Not
    # part of the report's JSON: policy versions store it.
    document: Any = field(default=None, repr=False, compare=False)

    @property
    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(LEVELS, 0)
        for finding in self.findings:
            counts[finding.level] += 1
        return counts

    @property
    def ok(self) -> bool:
        return not any(finding.level == ERROR for finding in self.findings)

    def fails(self, *, strict: bool = False) -> bool:
        """True when the report should fail a build: errors, or also warnings when ``strict``."""
        counts = self.counts
        return counts[ERROR] > 0 or (strict and counts[WARNING] > 0)

    def coverage_gaps(self) -> list[list[str]]:
        return [[c, s] for c in CATEGORIES for s in SEVERITIES if not self.coverage.get(c, {}).get(s)]

    def as_json(self) -> dict[str, Any]:
        return {
            "linter": {"name": LINTER_NAME, "version": LINTER_VERSION},
            "filename": self.filename,
            "policy_id": self.policy_id,
            "rule_count": self.rule_count,
            "linted_at": self.linted_at.isoformat(),
            "ok": self.ok,
            "counts": self.counts,
            "truncated": self.truncated,
            "findings": [finding.as_dict() for finding in self.findings],
            "coverage": {
                "categories": list(CATEGORIES),
                "severities": list(SEVERITIES),
                "matrix": self.coverage,
                "gaps": self.coverage_gaps(),
            },
        }

    def as_sarif(self) -> dict[str, Any]:
        return sarif_log([self])

    def as_text(self) -> str:
        """Compiler-style lines: ``file:line:col: level VGLnnn name: message``."""
        lines = []
        for f in self.findings:
            where = f"{self.filename}:{f.line}:{f.column}" if f.line is not None else self.filename
            lines.append(f"{where}: {f.level} {f.code} {f.name}: {f.message}")
        return "\n".join(lines)


def _sarif_rules() -> list[dict[str, Any]]:
    return [
        {
            "id": fc.code,
            "name": fc.name,
            "shortDescription": {"text": fc.summary},
            "fullDescription": {"text": f"{fc.summary} {fc.help}"},
            "help": {"text": fc.help},
            "defaultConfiguration": {"level": _SARIF_LEVEL[fc.level]},
            "properties": {"tags": list(fc.tags)},
        }
        for fc in FINDING_CLASSES.values()
    ]


def _sarif_location(uri: str, location: Location | Finding) -> dict[str, Any]:
    physical: dict[str, Any] = {"artifactLocation": {"uri": uri}}
    if location.line is not None:
        physical["region"] = {"startLine": location.line, "startColumn": location.column or 1}
    out: dict[str, Any] = {"physicalLocation": physical}
    if location.path:
        out["logicalLocations"] = [{"fullyQualifiedName": location.path, "kind": "member"}]
    return out


def sarif_log(reports: Iterable[LintReport]) -> dict[str, Any]:
    """One SARIF 2.1.0 log (one run) for the reports of one or more files; ``tool.driver.rules`` describes
    every finding class and each result points at its class by ``ruleId`` and ``ruleIndex``."""
    rule_index = {fc.code: index for index, fc in enumerate(FINDING_CLASSES.values())}
    reports = list(reports)
    results = []
    for report in reports:
        for f in report.findings:
            result: dict[str, Any] = {
                "ruleId": f.code,
                "ruleIndex": rule_index[f.code],
                "level": _SARIF_LEVEL[f.level],
                "message": {"text": f.message},
                "locations": [_sarif_location(report.filename, f)],
                "properties": {"name": f.name, "policyRuleId": f.rule_id},
            }
            if f.references:
                result["properties"]["references"] = [dict(ref) for ref in f.references]
            if f.article:
                result["properties"]["article"] = f.article
            if f.hint:
                result["properties"]["hint"] = f.hint
            if f.related:
                result["relatedLocations"] = [
                    {"id": index, **_sarif_location(report.filename, loc)} for index, loc in enumerate(f.related)
                ]
            results.append(result)
    return {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": LINTER_NAME,
                        "version": LINTER_VERSION,
                        "rules": _sarif_rules(),
                    }
                },
                "artifacts": [{"location": {"uri": report.filename}} for report in reports],
                "results": results,
                "columnKind": "unicodeCodePoints",
            }
        ],
    }


@cache
def policy_schema() -> dict[str, Any]:
    """The published policy JSON Schema (2020-12), read once per process."""
    return json.loads(SCHEMA_FILE.read_text())


@cache
def _schema_validator(definition: str | None = None) -> Draft202012Validator:
    """The validator of the whole document, or of one ``$defs`` entry (e.g. "rule")."""
    schema = policy_schema()
    if definition is not None:
        schema = {"$schema": schema["$schema"], "$defs": schema["$defs"], "$ref": f"#/$defs/{definition}"}
    return Draft202012Validator(schema)


def _schema_errors(data: Any) -> Iterator[tuple[Path_, Any]]:
    """The JSON Schema errors of ``data``. ``jsonschema`` runs only on what the fast conformance predicates
    (``policy_format``) reject: the document head, then each rejected rule (its paths re-rooted)."""
    spec = data.get("spec") if isinstance(data, dict) else None
    rules = spec.get("rules") if isinstance(spec, dict) else None
    if not isinstance(rules, list):
        yield from ((tuple(e.absolute_path), e) for e in _schema_validator().iter_errors(data))
        return
    head = {**data, "spec": {**spec, "rules": []}}
    if not policy_format.head_conforms(head):
        yield from ((tuple(e.absolute_path), e) for e in _schema_validator().iter_errors(head))
    for index, rule in enumerate(rules):
        if policy_format.rule_conforms(rule):
            continue
        for error in _schema_validator("rule").iter_errors(rule):
            yield ("spec", "rules", index, *error.absolute_path), error


# --- what Vigil measures ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class KnownSubject:
    category: str | None
    unit: str
    direction: str | None


@cache
def known_signals() -> dict[str, KnownSubject]:
    """Signals of the ``oversight.thresholds.<category>`` config defaults, with their unit and direction."""
    from config.keys import KEYS

    signals: dict[str, KnownSubject] = {}
    for key in KEYS:
        if key.key.startswith("oversight.thresholds."):
            category = key.key.rsplit(".", 1)[1]
            for name, spec in key.default.items():
                signals[name] = KnownSubject(category, spec.get("unit", "score"), spec.get("direction"))
    return signals


@cache
def known_suites() -> dict[str, str]:
    """Evaluation suite → its metric (every suite metric is a rate in [0, 1], higher is better)."""
    from governance.services.gateway import EVALUATION_SUITES

    return {name: suite.metric for name, suite in EVALUATION_SUITES.items()}


# --- regulatory tables -----------------------------------------------------------------------------------
EU_AI_ACT_ARTICLES = range(1, 114)
EU_AI_ACT_ANNEXES = ("I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII", "XIII")
# NIST AI RMF 1.0: function → {category number: number of subcategories}.
NIST_AI_RMF = {
    "GOVERN": {1: 7, 2: 3, 3: 2, 4: 3, 5: 2, 6: 2},
    "MAP": {1: 6, 2: 3, 3: 5, 4: 2, 5: 2},
    "MEASURE": {1: 3, 2: 13, 3: 3, 4: 3},
    "MANAGE": {1: 4, 2: 4, 3: 2, 4: 3},
}
# ISO/IEC 42001:2023 clauses 4-10 (sub-clause → number of sub-sub-clauses, 0 when none) and Annex A controls.
ISO_42001_CLAUSES = {
    4: {1: 0, 2: 0, 3: 0, 4: 0},
    5: {1: 0, 2: 0, 3: 0},
    6: {1: 4, 2: 0, 3: 0},
    7: {1: 0, 2: 0, 3: 0, 4: 0, 5: 3},
    8: {1: 0, 2: 0, 3: 0, 4: 0},
    9: {1: 0, 2: 2, 3: 3},
    10: {1: 0, 2: 0},
}
ISO_42001_ANNEX_A = {
    "A.2": ("A.2.2", "A.2.3", "A.2.4"),
    "A.3": ("A.3.2", "A.3.3"),
    "A.4": ("A.4.2", "A.4.3", "A.4.4", "A.4.5", "A.4.6"),
    "A.5": ("A.5.2", "A.5.3", "A.5.4", "A.5.5"),
    "A.6": ("A.6.1", "A.6.1.2", "A.6.1.3", "A.6.2", "A.6.2.2", "A.6.2.3", "A.6.2.4", "A.6.2.5", "A.6.2.6",
            "A.6.2.7", "A.6.2.8"),
    "A.7": ("A.7.2", "A.7.3", "A.7.4", "A.7.5", "A.7.6"),
    "A.8": ("A.8.2", "A.8.3", "A.8.4", "A.8.5"),
    "A.9": ("A.9.2", "A.9.3", "A.9.4"),
    "A.10": ("A.10.2", "A.10.3", "A.10.4"),
}  # fmt: skip

_EU_ARTICLE = re.compile(r"^(?:art\.?|article)\s*(\d{1,3})((?:\(\d{1,2}\))*(?:\([a-z]\))?)$", re.IGNORECASE)
_EU_ANNEX = re.compile(r"^annex\s+([ivxlc]+)$", re.IGNORECASE)
_NIST = re.compile(r"^(GOVERN|MAP|MEASURE|MANAGE)(?:\s+(\d{1,2})(?:\.(\d{1,2}))?)?$", re.IGNORECASE)
_ISO_CLAUSE = re.compile(r"^(\d{1,2})(?:\.(\d{1,2}))?(?:\.(\d{1,2}))?$")
_ISO_ANNEX = re.compile(r"^A\.\d{1,2}(?:\.\d{1,2}){0,2}$", re.IGNORECASE)


@lru_cache(maxsize=4096)  # policies cite the same few provisions over and over
def eu_article_number(ref: str) -> int | None:
    """The article number of an EU AI Act reference such as "Art. 14", "Article 15(1)", else None."""
    match = _EU_ARTICLE.match(ref.strip())
    return int(match.group(1)) if match else None


@lru_cache(maxsize=4096)
def reference_problem(framework: str, ref: str) -> str | None:
    """Why ``ref`` is not a provision of ``framework`` (None when it is one)."""
    ref = ref.strip()
    if framework == "eu_ai_act":
        if (number := eu_article_number(ref)) is not None:
            return None if number in EU_AI_ACT_ARTICLES else f"the EU AI Act has Articles 1-113, not {number}"
        if (annex := _EU_ANNEX.match(ref)) and annex.group(1).upper() in EU_AI_ACT_ANNEXES:
            return None
        return f"{ref!r} is not an EU AI Act article or annex (write 'Art. 14', 'Art. 15(1)' or 'Annex III')"
    if framework == "nist_ai_rmf":
        match = _NIST.match(ref)
        if not match:
            return f"{ref!r} is not a NIST AI RMF function or subcategory (write e.g. 'MEASURE 2.5')"
        function, category, sub = match.group(1).upper(), match.group(2), match.group(3)
        categories = NIST_AI_RMF[function]
        if category is not None and int(category) not in categories:
            return f"NIST AI RMF {function} has categories 1-{max(categories)}, not {category}"
        if sub is not None and not 1 <= int(sub) <= categories[int(category)]:
            return f"NIST AI RMF {function} {category} has subcategories .1-.{categories[int(category)]}, not .{sub}"
        return None
    if framework == "iso_42001":
        if _ISO_ANNEX.match(ref):
            parts = ref.upper().split(".")
            group = ".".join(parts[:2])
            if group not in ISO_42001_ANNEX_A:
                return f"ISO/IEC 42001 Annex A has control groups A.2-A.10, not {group}"
            if len(parts) > 2 and ".".join(parts) not in ISO_42001_ANNEX_A[group]:
                return f"{ref} is not an ISO/IEC 42001 Annex A control of {group}"
            return None
        match = _ISO_CLAUSE.match(ref)
        if not match:
            return f"{ref!r} is not an ISO/IEC 42001 clause or Annex A control (write e.g. '8.4' or 'A.6.2.6')"
        clause, sub, subsub = (int(g) if g else None for g in match.groups())
        if clause not in ISO_42001_CLAUSES:
            return f"ISO/IEC 42001 requirements are clauses 4-10, not {clause}"
        if sub is not None and sub not in ISO_42001_CLAUSES[clause]:
            return f"ISO/IEC 42001 clause {clause} has no sub-clause {clause}.{sub}"
        if subsub is not None and not 1 <= subsub <= ISO_42001_CLAUSES[clause][sub]:
            return f"ISO/IEC 42001 has no clause {clause}.{sub}.{subsub}"
        return None
    return f"unknown framework {framework!r}"


# --- parsing: text → data + positions --------------------------------------------------------------------
Path_ = tuple[str | int, ...]


class _Stop(Exception):
    """Parsing cannot go on; carries the finding that says why."""

    def __init__(self, finding: Finding):
        self.finding = finding


def dotted(path: Path_) -> str:
    return ".".join(str(part) for part in path)


def _fmt(value: Any) -> str:
    """A number as people write it, safe for huge ints (format(10**400, 'g') overflows)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return repr(value)
    if isinstance(value, int):
        return str(value) if abs(value) < 10**15 else f"{str(value)[:6]}…({len(str(abs(value)))} digits)"
    return f"{value:g}"


@dataclass
class _Parsed:
    data: Any
    positions: policy_source.Positions = field(default_factory=policy_source.MappedPositions)
    findings: list[Finding] = field(default_factory=list)
    bad_paths: set[Path_] = field(default_factory=set)


def _finding(name: str, message: str, *, level: str | None = None, **kwargs: Any) -> Finding:
    fc = FINDING_CLASSES[name]
    return Finding(code=fc.code, name=fc.name, level=level or fc.level, message=message, **kwargs)


_STANDARD_TAGS = {
    "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:seq",
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
}
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present (positions either way)
_STR_TAG = "tag:yaml.org,2002:str"
_SKIP = object()  # a node whose value is dropped (already reported)


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _parse_text(text: str, filename: str) -> _Parsed:
    """YAML (a superset of JSON, so also JSON) → plain data and the (line, column) of any JSON path.

    JSON and block-style YAML are read by the fast readers of ``policy_source`` (data at C speed or in one
    pass, positions on demand); whatever they do not reproduce exactly goes through :func:`_read_nodes`."""
    limits = {"max_nodes": MAX_NODES, "max_depth": MAX_DEPTH}
    if filename.lower().endswith(".json"):
        try:  # strict JSON first: its errors are the ones a JSON author expects
            fast = policy_source.read_json(text, strict=True, **limits)
        except json.JSONDecodeError as exc:
            raise _Stop(_finding("syntax", f"invalid JSON: {exc.msg}", line=exc.lineno, column=exc.colno)) from exc
        except (ValueError, RecursionError) as exc:
            raise _Stop(_finding("syntax", f"invalid JSON: {exc}", line=1, column=1)) from exc
    elif text.lstrip(" \n")[:1] in ("{", "["):
        fast = policy_source.read_json(text, strict=False, **limits)
    else:
        fast = policy_source.read_block_yaml(text, **limits)
    if fast is not None:
        return _Parsed(data=fast.data, positions=fast.positions)
    return _read_nodes(text)


def _read_nodes(text: str) -> _Parsed:
    """The complete reader: PyYAML's node graph, every node's position recorded, every oddity a finding."""
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        parsed = _Parsed(data=None)
        if root is not None:
            parsed.data = _from_nodes(root, loader, parsed)
        return parsed
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        problem = " ".join(part for part in (exc.context, exc.problem) if part) or "invalid YAML"
        raise _Stop(_finding("syntax", f"invalid YAML: {problem}", line=line, column=column)) from exc
    except yaml.YAMLError as exc:
        raise _Stop(_finding("syntax", f"invalid YAML: {exc}", line=1, column=1)) from exc
    except RecursionError as exc:
        raise _Stop(_finding("document-limit", "the document is nested too deeply to read", line=1, column=1)) from exc
    finally:
        loader.dispose()


def _from_nodes(root: yaml.Node, loader: Any, parsed: _Parsed) -> Any:
    """Build plain data from the node tree iteratively, recording positions; bounded in nodes and depth."""
    visited = 0
    positions = parsed.positions

    def convert(node: yaml.Node, path: Path_) -> Any:
        nonlocal visited
        visited += 1
        if visited > MAX_NODES:
            raise _Stop(_finding("document-limit", f"the document has more than {MAX_NODES:,} nodes "
                                 "(anchors and aliases count each time they are used)", line=1, column=1))  # fmt: skip
        positions.values[path] = _mark(node)
        if len(path) > MAX_DEPTH:
            line, column = _mark(node)
            parsed.findings.append(_finding("document-limit", f"nested deeper than {MAX_DEPTH} levels; the value "
                                            "is ignored", path=dotted(path), line=line, column=column))  # fmt: skip
            parsed.bad_paths.add(path)
            return _SKIP
        if node.tag not in _STANDARD_TAGS:
            line, column = _mark(node)
            parsed.findings.append(_finding("syntax", f"unsupported YAML tag {node.tag!r}", path=dotted(path),
                                            line=line, column=column))  # fmt: skip
            parsed.bad_paths.add(path)
            return _SKIP
        if isinstance(node, yaml.ScalarNode):
            if node.tag == _STR_TAG:
                return node.value
            try:
                value = loader.construct_object(node)
            except Exception as exc:  # any unreadable scalar is a syntax finding
                line, column = _mark(node)
                parsed.findings.append(_finding("syntax", f"unreadable value: {exc}", path=dotted(path), line=line,
                                                column=column))  # fmt: skip
                parsed.bad_paths.add(path)
                return None
            if isinstance(value, float) and not math.isfinite(value):
                line, column = _mark(node)
                parsed.findings.append(_finding("syntax", f"{node.value!r} is not a finite number", path=dotted(path),
                                                line=line, column=column))  # fmt: skip
                parsed.bad_paths.add(path)
                return None
            return value
        return None  # containers are filled by the caller's loop

    def container_for(node: yaml.Node, value: Any) -> Any:
        if value is _SKIP:
            return None
        if isinstance(node, yaml.MappingNode):
            return {}
        return [] if isinstance(node, yaml.SequenceNode) else value

    root_value = container_for(root, convert(root, ()))
    stack: list[tuple[yaml.Node, Path_, Any]] = []
    if isinstance(root_value, dict | list):
        stack.append((root, (), root_value))
    while stack:
        node, path, container = stack.pop()
        if isinstance(node, yaml.SequenceNode):
            for index, child in enumerate(node.value):
                child_path = (*path, index)
                value = container_for(child, convert(child, child_path))
                container.append(value)
                if isinstance(value, dict | list):
                    stack.append((child, child_path, value))
            continue
        seen: dict[str, tuple[int, int]] = {}
        for key_node, child in node.value:
            line, column = _mark(key_node)
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != "tag:yaml.org,2002:str":
                shown = key_node.value if isinstance(key_node, yaml.ScalarNode) else "a collection"
                parsed.findings.append(_finding(
                    "syntax", f"mapping key {shown!r} is not a string (quote it; YAML reads yes/no/on/off as booleans "
                    "and bare numbers as numbers)", path=dotted(path), line=line, column=column))  # fmt: skip
                parsed.bad_paths.add(path)
                continue
            key = key_node.value
            if key in seen:
                parsed.findings.append(_finding(
                    "syntax", f"duplicate key {key!r} (first at line {seen[key][0]}); YAML keeps only the last",
                    path=dotted((*path, key)), line=line, column=column))  # fmt: skip
                parsed.bad_paths.add((*path, key))
            seen[key] = (line, column)
            child_path = (*path, key)
            positions.keys[child_path] = (line, column)
            value = container_for(child, convert(child, child_path))
            if isinstance(value, dict | list):
                stack.append((child, child_path, value))
            container[key] = value
    return root_value


def _normalize_document(document: Any) -> _Parsed:
    """An already-parsed document → plain JSON data (non-JSON values become findings); bounded like text."""
    parsed = _Parsed(data=None)
    visited = 0

    def scalar(value: Any, path: Path_) -> Any:
        if value is None or isinstance(value, str | bool | int):
            return value
        if isinstance(value, float):
            if math.isfinite(value):
                return value
            problem = f"{value!r} is not a finite number"
        else:
            problem = f"a {type(value).__name__} is not a JSON value"
        parsed.findings.append(_finding("syntax", problem, path=dotted(path)))
        parsed.bad_paths.add(path)
        return None

    def visit(value: Any, path: Path_) -> Any:
        nonlocal visited
        visited += 1
        if visited > MAX_NODES:
            raise _Stop(_finding("document-limit", f"the document has more than {MAX_NODES:,} values"))
        if len(path) > MAX_DEPTH:
            parsed.findings.append(_finding("document-limit", f"nested deeper than {MAX_DEPTH} levels; the value "
                                            "is ignored", path=dotted(path)))  # fmt: skip
            parsed.bad_paths.add(path)
            return None
        if isinstance(value, dict):
            return {}
        if isinstance(value, list | tuple):
            return []
        return scalar(value, path)

    root = visit(document, ())
    stack = [(document, (), root)] if isinstance(root, dict | list) else []
    while stack:
        source, path, target = stack.pop()
        is_mapping = isinstance(source, dict)
        items = source.items() if is_mapping else enumerate(source)
        plain_children = len(path) < MAX_DEPTH  # their scalars need no path: nothing to report about them
        for key, value in items:
            if is_mapping and type(key) is not str and not isinstance(key, str):
                parsed.findings.append(_finding("syntax", f"mapping key {key!r} is not a string", path=dotted(path)))
                parsed.bad_paths.add(path)
                continue
            kind = type(value)
            if plain_children and (
                kind is str or kind is int or kind is bool or value is None or (kind is float and math.isfinite(value))
            ):
                visited += 1
                if visited > MAX_NODES:
                    raise _Stop(_finding("document-limit", f"the document has more than {MAX_NODES:,} values"))
                if is_mapping:
                    target[key] = value
                else:
                    target.append(value)
                continue
            child_path = (*path, key)
            child = visit(value, child_path)
            if isinstance(target, dict):
                target[key] = child
            else:
                target.append(child)
            if isinstance(child, dict | list):
                stack.append((value, child_path, child))
    parsed.data = root
    return parsed


# --- the semantic model -----------------------------------------------------------------------------------
Subject = tuple[str, ...]
_INF = math.inf


@dataclass(frozen=True)
class Range:
    """A numeric interval with optionally open ends and excluded points (from ``!=``)."""

    lo: float = -_INF
    lo_closed: bool = False
    hi: float = _INF
    hi_closed: bool = False
    excluded: frozenset = frozenset()

    @staticmethod
    def of(op: str, value: float) -> Range:
        if op == "<":
            return Range(hi=value)
        if op == "<=":
            return Range(hi=value, hi_closed=True)
        if op == ">":
            return Range(lo=value)
        if op == ">=":
            return Range(lo=value, lo_closed=True)
        if op == "==":
            return Range(lo=value, lo_closed=True, hi=value, hi_closed=True)
        if op == "!=":
            return Range(excluded=frozenset({value}))
        raise KeyError(op)

    def holds(self, x: float) -> bool:
        above = x > self.lo or (x == self.lo and self.lo_closed)
        below = x < self.hi or (x == self.hi and self.hi_closed)
        return above and below and x not in self.excluded

    def intersect(self, other: Range) -> Range:
        if self.lo > other.lo or (self.lo == other.lo and not self.lo_closed):
            lo, lo_closed = self.lo, self.lo_closed
        else:
            lo, lo_closed = other.lo, other.lo_closed
        if self.hi < other.hi or (self.hi == other.hi and not self.hi_closed):
            hi, hi_closed = self.hi, self.hi_closed
        else:
            hi, hi_closed = other.hi, other.hi_closed
        return Range(lo, lo_closed, hi, hi_closed, self.excluded | other.excluded)

    @property
    def empty(self) -> bool:
        if self.lo > self.hi:
            return True
        if self.lo == self.hi:
            return not (self.lo_closed and self.hi_closed) or self.lo in self.excluded
        return False

    def contains(self, other: Range) -> bool:
        """Every value of ``other`` is a value of ``self``."""
        if other.empty:
            return True
        lo_ok = self.lo < other.lo or (self.lo == other.lo and (self.lo_closed or not other.lo_closed))
        hi_ok = self.hi > other.hi or (self.hi == other.hi and (self.hi_closed or not other.hi_closed))
        return lo_ok and hi_ok and not any(other.holds(x) for x in self.excluded)

    def describe(self) -> str:
        if self.lo == self.hi and not self.empty:
            return f"= {_fmt(self.lo)}"
        parts = []
        if self.lo != -_INF:
            parts.append(f"{'≥' if self.lo_closed else '>'} {_fmt(self.lo)}")
        if self.hi != _INF:
            parts.append(f"{'≤' if self.hi_closed else '<'} {_fmt(self.hi)}")
        parts += [f"≠ {_fmt(x)}" for x in sorted(self.excluded)]
        return " and ".join(parts) or "any value"


@dataclass(frozen=True)
class Values:
    """A set of attribute values: ``positive`` = exactly these, else every value except these."""

    positive: bool
    values: frozenset

    def intersect(self, other: Values) -> Values:
        if self.positive and other.positive:
            return Values(True, self.values & other.values)
        if self.positive:
            return Values(True, self.values - other.values)
        if other.positive:
            return Values(True, other.values - self.values)
        return Values(False, self.values | other.values)

    @property
    def empty(self) -> bool:
        return self.positive and not self.values

    def contains(self, other: Values) -> bool:
        if other.empty:
            return True
        if self.positive and other.positive:
            return other.values <= self.values
        if not self.positive and other.positive:
            return not (other.values & self.values)
        if not self.positive and not other.positive:
            return self.values <= other.values
        return False

    def describe(self) -> str:
        shown = ", ".join(sorted(self.values))
        return f"in [{shown}]" if self.positive else f"not in [{shown}]"


Constraint = Range | Values


@dataclass
class _Rule:
    index: int
    id: str
    category: str
    severity: str
    action: str
    path: Path_
    constraints: dict[Subject, Constraint]
    condition_paths: dict[Subject, list[Path_]]
    references: list[dict[str, str]]
    has_measure: bool  # a metric/signal condition or thresholds
    eu_articles: frozenset[int] = frozenset()  # the EU AI Act articles its references cite
    unreachable: str | None = None
    shadowed: bool = False

    @property
    def signature(self) -> frozenset[Subject]:
        return frozenset(self.constraints)


def _subject_of(item: dict[str, Any]) -> Subject:
    if "metric" in item:
        return ("metric", item.get("suite", ""), item["metric"])
    if "signal" in item:
        return ("signal", item["signal"], item.get("category", ""), item.get("aggregate", ""), item.get("window", ""))
    return ("attribute", item["attribute"])


def describe_subject(subject: Subject) -> str:
    if subject[0] == "metric":
        return f"metric {subject[2]}" + (f" (suite {subject[1]})" if subject[1] else "")
    if subject[0] == "signal":
        extra = " ".join(part for part in (subject[3], f"over {subject[4]}" if subject[4] else "") if part)
        return f"signal {subject[1]}" + (f" ({extra})" if extra else "")
    return f"attribute {subject[1]}"


def _natural(subject: Subject) -> KnownSubject | None:
    if subject[0] == "signal":
        return known_signals().get(subject[1])
    if subject[0] == "metric":
        suites = known_suites()
        if subject[2] in suites.values() and (not subject[1] or suites.get(subject[1]) == subject[2]):
            return KnownSubject(None, "ratio", "below")
    return None


_CONVERSIONS = {
    ("percent", "ratio"): 0.01,
    ("ratio", "percent"): 100.0,
    ("seconds", "ms"): 1000.0,
    ("ms", "seconds"): 0.001,
}


# --- the linter ---------------------------------------------------------------------------------------------
class _Linter:
    def __init__(self, parsed: _Parsed):
        self.parsed = parsed
        self.findings: list[Finding] = parsed.findings[:MAX_FINDINGS]
        self.truncated = len(parsed.findings) > MAX_FINDINGS
        self.rules: list[_Rule] = []
        self.coverage: dict[str, dict[str, list[str]]] = {c: {s: [] for s in SEVERITIES} for c in CATEGORIES}
        self.pair_checks = 0
        self.scope: dict[Subject, Values] = {}

    # positions
    def where(self, path: Path_, *, key: bool = False) -> dict[str, Any]:
        line, column = self.parsed.positions.locate(path, key=key)
        return {"path": dotted(path), "line": line, "column": column}

    def location(self, rule: _Rule) -> Location:
        w = self.where(rule.path)
        return Location(w["path"], w["line"], w["column"], rule.id)

    def add(self, name: str, message: str, path: Path_, *, key: bool = False, **kwargs: Any) -> None:
        if len(self.findings) >= MAX_FINDINGS:
            self.truncated = True
            return
        self.findings.append(_finding(name, message, **self.where(path, key=key), **kwargs))

    # --- schema
    def check_schema(self) -> set[Path_]:
        """Schema findings; returns the paths that have one (semantic checks skip what is under them)."""
        invalid: set[Path_] = set()
        data = self.parsed.data
        if data is None:
            self.add("schema", "the document is empty; expected a Policy object (apiVersion, kind, metadata, spec)", ())
            return {()}
        errors = 0
        for path, error in _schema_errors(data):
            if any(path[: len(bad)] == bad for bad in self.parsed.bad_paths):
                invalid.add(path)
                continue  # already reported as a syntax finding
            errors += 1
            if errors > MAX_SCHEMA_ERRORS:
                self.truncated = True
                break
            invalid.add(path)
            message, at, key = self._schema_message(error, path)
            self.add("schema", message, at, key=key)
        return invalid

    @staticmethod
    def _schema_message(error: Any, path: Path_) -> tuple[str, Path_, bool]:
        where = dotted(path) or "the document"
        schema = error.schema if isinstance(error.schema, dict) else {}
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            allowed = set(schema.get("properties", {}))
            extra = sorted(k for k in error.instance if k not in allowed)
            if extra:
                hint = f"; allowed: {', '.join(sorted(allowed))}" if allowed else ""
                return f"{where}: unknown key {extra[0]!r}{hint}", (*path, extra[0]), True
        if error.validator == "required":
            return f"{where}: {error.message}", path, False
        if "x-message" in schema:
            return f"{where}: {schema['x-message']}", path, False
        if error.validator == "enum":
            choices = ", ".join(str(c) for c in error.validator_value)
            return f"{where}: {_short(error.instance)} is not one of: {choices}", path, False
        if error.validator == "type":
            expected = (
                error.validator_value if isinstance(error.validator_value, str) else " or ".join(error.validator_value)
            )
            return f"{where}: must be of type {expected}, not {_json_type(error.instance)}", path, False
        if error.validator == "const":
            return f"{where}: must be {error.validator_value!r}, not {_short(error.instance)}", path, False
        return f"{where}: {_short_message(error.message)}", path, False

    # --- model
    def build_rules(self, invalid: set[Path_]) -> None:
        data = self.parsed.data
        spec = data.get("spec") if isinstance(data, dict) else None
        if not isinstance(spec, dict):
            return
        rules = spec.get("rules")
        if not isinstance(rules, list):
            return
        self.scope = self._scope(spec, invalid)
        invalid_rules = {p[2] for p in invalid if len(p) >= 3 and p[:2] == ("spec", "rules")}
        spec_invalid = any(p in {(), ("spec",), ("spec", "rules")} for p in invalid)
        if spec_invalid:
            return
        for index, rule in enumerate(rules):
            if index in invalid_rules or not isinstance(rule, dict):
                continue
            self.rules.append(self._rule(index, rule))

    def _scope(self, spec: dict[str, Any], invalid: set[Path_]) -> dict[Subject, Values]:
        scope = spec.get("scope")
        out: dict[Subject, Values] = {}
        if not isinstance(scope, dict) or any(p[:2] == ("spec", "scope") for p in invalid):
            return out
        for attribute in ("risk_class", "entity_type"):
            if isinstance(scope.get(attribute), list):
                out[("attribute", attribute)] = Values(True, frozenset(scope[attribute]))
        return out

    def _rule(self, index: int, raw: dict[str, Any]) -> _Rule:
        path: Path_ = ("spec", "rules", index)
        references = list(raw.get("references", []))
        rule = _Rule(
            index=index,
            id=raw["id"],
            category=raw["category"],
            severity=raw["severity"],
            action=raw["action"],
            path=path,
            constraints=dict(self.scope),
            condition_paths=defaultdict(list),
            references=references,
            has_measure=False,
            eu_articles=frozenset(
                number
                for reference in references
                if reference["framework"] == "eu_ai_act" and (number := eu_article_number(reference["ref"])) is not None
            ),
        )
        for subject in self.scope:
            rule.condition_paths[subject].append(("spec", "scope", subject[1]))
        for position, condition in enumerate(raw.get("when", [])):
            cpath = (*path, "when", position)
            subject = _subject_of(condition)
            if subject[0] == "attribute":
                constraint: Constraint = self._values(subject[1], condition["op"], condition["value"])
            else:
                rule.has_measure = True
                value = self._check_number(rule, subject, condition.get("unit"), condition["value"], (*cpath, "value"))
                constraint = Range.of(condition["op"], value)
            self._constrain(rule, subject, constraint, cpath)
        thresholds = raw.get("thresholds")
        if thresholds is not None:
            rule.has_measure = True
            self._check_thresholds(rule, thresholds)
        return rule

    @staticmethod
    def _values(attribute: str, op: str, value: Any) -> Values:
        values = frozenset(value) if isinstance(value, list) else frozenset({value})
        constraint = Values(op in {"in", "=="}, values)
        universe = _ATTRIBUTE_UNIVERSE.get(attribute)
        if universe is not None and not constraint.positive:
            constraint = Values(True, universe - constraint.values)
        return constraint

    @staticmethod
    def _constrain(rule: _Rule, subject: Subject, constraint: Constraint, cpath: Path_) -> None:
        current = rule.constraints.get(subject)
        rule.constraints[subject] = constraint if current is None else current.intersect(constraint)
        rule.condition_paths[subject].append(cpath)

    # --- thresholds and units
    def _check_number(self, rule: _Rule, subject: Subject, unit: str | None, value: float, path: Path_) -> float:
        """Range and unit checks of one threshold value; returns the value in the subject's own unit."""
        natural = _natural(subject)
        effective = unit or (natural.unit if natural else None)
        self._check_range(rule, effective, value, path)
        if natural is not None and unit is not None and unit != natural.unit:
            factor = _CONVERSIONS.get((unit, natural.unit))
            hint = f"write {_fmt(value * factor)} ({natural.unit})" if factor else f"state it in {natural.unit}"
            self.add(
                "unit-mismatch",
                f"{describe_subject(subject)} is measured in {natural.unit}, this threshold says {unit}; {hint}",
                (*path[:-1], "unit"),
                rule_id=rule.id,
                hint=hint,
            )
            return value * factor if factor else value
        return value

    def _check_range(self, rule: _Rule, unit: str | None, value: float, path: Path_) -> None:
        problem = None
        if unit == "ratio" and not 0 <= value <= 1:
            problem = f"{_fmt(value)} is not a ratio (0-1)" + ("; did you mean percent?" if 1 < value <= 100 else "")
        elif unit == "percent" and not 0 <= value <= 100:
            problem = f"{_fmt(value)} is not a percentage (0-100)"
        elif unit in {"count", "ms", "seconds"} and value < 0:
            problem = f"a {unit} threshold cannot be negative ({_fmt(value)})"
        if problem:
            self.add("threshold-range", problem, path, rule_id=rule.id)

    def _check_thresholds(self, rule: _Rule, thresholds: dict[str, Any]) -> None:
        tpath = (*rule.path, "thresholds")
        subject = _subject_of(thresholds)
        levels = {}
        for level in ("info", "warning", "critical"):
            if level in thresholds["levels"]:
                levels[level] = self._check_number(
                    rule, subject, thresholds.get("unit"), thresholds["levels"][level], (*tpath, "levels", level)
                )
        above = thresholds["direction"] == "above"
        natural = _natural(subject)
        if natural is not None and natural.direction and natural.direction != thresholds["direction"]:
            self.add(
                "unit-mismatch",
                f"{describe_subject(subject)} is worse when {natural.direction} its threshold, but direction is "
                f"{thresholds['direction']!r}",
                (*tpath, "direction"),
                rule_id=rule.id,
            )

        def worse(a: float, b: float) -> bool:  # a is strictly more severe than b
            return a > b if above else a < b

        if "warning" in levels and "critical" in levels and not worse(levels["critical"], levels["warning"]):
            relation = "below" if above else "above"
            self.add(
                "threshold-order",
                f"direction is {thresholds['direction']!r}, so warning ({_fmt(levels['warning'])}) must be {relation} "
                f"critical ({_fmt(levels['critical'])})",
                (*tpath, "levels", "warning"),
                rule_id=rule.id,
            )
        if "info" in levels:
            for higher in ("warning", "critical"):
                if higher in levels and not worse(levels[higher], levels["info"]):
                    self.add(
                        "non-monotonic-levels",
                        f"levels must grow in severity in direction {thresholds['direction']!r}: info "
                        f"({_fmt(levels['info'])}) is not less severe than {higher} ({_fmt(levels[higher])})",
                        (*tpath, "levels", "info"),
                        rule_id=rule.id,
                    )
                    break
        if levels:
            start = min(levels.values()) if above else max(levels.values())
            self._constrain(rule, subject, Range.of(">=" if above else "<=", start), tpath)

    # --- per-rule checks
    def check_rules(self) -> None:
        first_seen: dict[str, _Rule] = {}
        for rule in self.rules:
            if rule.id in first_seen:
                first = first_seen[rule.id]
                self.add(
                    "duplicate-id",
                    f"rule id {rule.id!r} is already used by rule {first.index} "
                    f"(line {self.where(first.path)['line']})",
                    (*rule.path, "id"),
                    rule_id=rule.id,
                    related=(self.location(first),),
                )
            else:
                first_seen[rule.id] = rule
            self.coverage[rule.category][rule.severity].append(rule.id)
            self._check_subjects(rule)
            self._check_references(rule)
            for subject, constraint in rule.constraints.items():
                if constraint.empty:
                    rule.unreachable = self._unreachable_reason(rule, subject)
                    self.add(
                        "unreachable-rule",
                        f"rule {rule.id!r} can never match: {rule.unreachable}",
                        rule.condition_paths[subject][-1],
                        rule_id=rule.id,
                    )
                    break

    def _unreachable_reason(self, rule: _Rule, subject: Subject) -> str:
        paths = rule.condition_paths[subject]
        if subject[0] == "attribute" and any(p[:2] == ("spec", "scope") for p in paths):
            return f"its {describe_subject(subject)} conditions exclude every value the policy's scope allows"
        if len(paths) == 1:
            return f"the condition on {describe_subject(subject)} admits no value"
        return f"its conditions on {describe_subject(subject)} contradict each other"

    def _check_subjects(self, rule: _Rule) -> None:
        signals, suites = known_signals(), known_suites()
        for subject, paths in rule.condition_paths.items():
            path = paths[0]
            if subject[0] == "signal":
                name, category = subject[1], subject[2]
                if name in signals:
                    known = signals[name]
                    if category and known.category != category:
                        self.add(
                            "unknown-subject",
                            f"signal {name!r} is a {known.category} signal; events of category {category} never "
                            "carry it",
                            (*path, "category"),
                            level=WARNING,
                            rule_id=rule.id,
                        )
                    continue
                self._unknown(rule, "signal", name, list(signals), (*path, "signal"))
            elif subject[0] == "metric":
                suite, metric = subject[1], subject[2]
                if suite and suite in suites:
                    if suites[suite] != metric:
                        self.add(
                            "unknown-subject",
                            f"the {suite} suite measures {suites[suite]!r}, not {metric!r}",
                            (*path, "metric"),
                            level=WARNING,
                            rule_id=rule.id,
                            hint=f"metric: {suites[suite]}",
                        )
                elif suite:
                    self._unknown(rule, "evaluation suite", suite, list(suites), (*path, "suite"))
                elif metric not in suites.values():
                    self._unknown(rule, "evaluation metric", metric, list(suites.values()), (*path, "metric"))

    def _unknown(self, rule: _Rule, kind: str, name: str, known: list[str], path: Path_) -> None:
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
        if close:
            self.add("unknown-subject", f"unknown {kind} {name!r}; did you mean {close[0]!r}?", path, level=WARNING,
                     rule_id=rule.id, hint=close[0])  # fmt: skip
        else:
            self.add("unknown-subject", f"{kind} {name!r} is not one Vigil produces; the rule matches only data that "
                     "carries it", path, rule_id=rule.id)  # fmt: skip

    def _check_references(self, rule: _Rule) -> None:
        for position, reference in enumerate(rule.references):
            problem = reference_problem(reference["framework"], reference["ref"])
            if problem:
                self.add(
                    "unknown-reference",
                    problem,
                    (*rule.path, "references", position, "ref"),
                    rule_id=rule.id,
                    references=({"framework": reference["framework"], "ref": reference["ref"]},),
                )

    # --- pairs of rules (first-match semantics)
    def check_pairs(self) -> None:
        live = [rule for rule in self.rules if rule.unreachable is None]
        groups: dict[frozenset[Subject], list[_Rule]] = defaultdict(list)
        for rule in live:
            groups[rule.signature].append(rule)
        indexes = {signature: _GroupIndex(members) for signature, members in groups.items()}
        subsets: dict[frozenset[Subject], list[frozenset[Subject]]] = {
            signature: [other for other in groups if other <= signature] for signature in groups
        }
        for rule in live:
            if self.pair_checks > MAX_PAIR_CHECKS:
                self.truncated = True
                message = f"rule-pair analysis stopped after {MAX_PAIR_CHECKS:,} comparisons; later shadowing and "
                self.add("document-limit", message + "conflicts are not reported", ("spec", "rules"), level=INFO)
                return
            shadow = self._first_superset(rule, subsets[rule.signature], groups, indexes)
            if shadow is not None:
                rule.shadowed = True
                self._report_shadow(shadow, rule)
                continue
            self._check_overlap(rule, indexes[rule.signature])

    def _first_superset(self, rule: _Rule, signatures, groups, indexes) -> _Rule | None:
        best: _Rule | None = None
        for signature in signatures:
            for earlier in indexes[signature].candidates(rule):
                if earlier.index >= rule.index or (best is not None and earlier.index >= best.index):
                    continue
                self.pair_checks += 1
                if _contains(earlier, rule):
                    best = earlier
        return best

    def _report_shadow(self, earlier: _Rule, rule: _Rule) -> None:
        same = earlier.signature == rule.signature and _contains(rule, earlier)
        line = self.where(earlier.path)["line"]
        opposite = (earlier.action == "allow") != (rule.action == "allow")
        if same and opposite:
            self.add(
                "conflicting-rules",
                f"rule {rule.id!r} ({rule.action}) has the same conditions as rule {earlier.id!r} "
                f"({earlier.action}, line {line}); the earlier rule always decides",
                rule.path,
                rule_id=rule.id,
                related=(self.location(earlier),),
            )
            return
        what = "the same conditions as" if same else "only cases already matched by"
        self.add(
            "shadowed-rule",
            f"rule {rule.id!r} is never reached: it has {what} rule {earlier.id!r} (line {line}), which comes first",
            rule.path,
            rule_id=rule.id,
            related=(self.location(earlier),),
            hint=f"move {rule.id!r} above {earlier.id!r} or narrow {earlier.id!r}",
        )

    def _check_overlap(self, rule: _Rule, index: _GroupIndex) -> None:
        numeric = [s for s, c in rule.constraints.items() if isinstance(c, Range)]
        if not numeric:
            return
        for earlier in index.overlap_candidates(rule):
            if earlier.index >= rule.index or (earlier.action == "allow") == (rule.action == "allow"):
                continue
            self.pair_checks += 1
            if not all(not c.intersect(earlier.constraints[s]).empty for s, c in rule.constraints.items()):
                continue
            subject = numeric[0]
            overlap = rule.constraints[subject].intersect(earlier.constraints[subject])
            line = self.where(earlier.path)["line"]
            self.add(
                "overlapping-ranges",
                f"for {describe_subject(subject)} {overlap.describe()} both rule {earlier.id!r} ({earlier.action}, "
                f"line {line}) and rule {rule.id!r} ({rule.action}) match; {earlier.id!r} decides",
                rule.condition_paths[subject][-1],
                rule_id=rule.id,
                related=(self.location(earlier),),
            )
            return

    # --- severity ladders across rules
    def check_ladders(self) -> None:
        """Rules on one measured subject alone (plus attributes), one-sided in the same direction: a more
        severe rule must have the stricter threshold."""
        rank = {s: i for i, s in enumerate(reversed(SEVERITIES))}
        ladders: dict[tuple, list[tuple[_Rule, Subject, Range]]] = defaultdict(list)
        for rule in self.rules:
            if rule.unreachable is not None or rule.shadowed:
                continue
            numeric = [(s, c) for s, c in rule.constraints.items() if isinstance(c, Range)]
            if len(numeric) != 1:
                continue
            subject, bound = numeric[0]
            if (bound.lo == -_INF) == (bound.hi == _INF):
                continue
            above = bound.hi == _INF
            others = tuple(sorted((s, c) for s, c in rule.constraints.items() if s != subject))
            ladders[(subject, above, others)].append((rule, subject, bound))
        for (subject, above, _), members in ladders.items():
            members.sort(key=lambda m: rank[m[0].severity])
            for (lower, _, low_bound), (higher, _, high_bound) in zip(members, members[1:], strict=False):
                if rank[lower.severity] == rank[higher.severity]:
                    continue
                low, high = (low_bound.lo, high_bound.lo) if above else (low_bound.hi, high_bound.hi)
                stricter = high > low if above else high < low
                if not stricter:
                    self.add(
                        "non-monotonic-levels",
                        f"rule {higher.id!r} ({higher.severity}) fires at {describe_subject(subject)} "
                        f"{high_bound.describe()}, no stricter than rule {lower.id!r} ({lower.severity}) at "
                        f"{low_bound.describe()}",
                        higher.condition_paths[subject][-1],
                        level=WARNING,
                        rule_id=higher.id,
                        related=(self.location(lower),),
                    )

    # --- whole-policy checks
    def check_policy(self) -> None:
        data = self.parsed.data
        spec = data.get("spec") if isinstance(data, dict) else None
        if not isinstance(spec, dict) or not isinstance(spec.get("rules"), list):
            return
        scope = spec.get("scope") if isinstance(spec.get("scope"), dict) else {}
        risk = scope.get("risk_class") if isinstance(scope.get("risk_class"), list) else None
        for category in CATEGORIES:
            missing = [s for s in SEVERITIES if not self.coverage[category][s]]
            if missing:
                text = "any severity" if len(missing) == len(SEVERITIES) else "severity " + ", ".join(missing)
                self.add("coverage-gap", f"no rule covers {category} at {text}", ("spec", "rules"), key=True)
        if risk is None or "high" in risk:
            self._check_regulatory(risk)
        self._check_prohibited(spec, risk)

    def _cites(self, article: int) -> list[_Rule]:
        return [rule for rule in self.rules if article in rule.eu_articles]

    def _check_regulatory(self, risk: list[str] | None) -> None:
        whom = "high-risk systems" if risk else "every system (no risk_class scope), including high-risk ones"
        obligations = [
            (14, "human oversight", WARNING,
             any(r.action in {"require_review", "escalate"} for r in self.rules) or self._cites(14),
             "add a require_review or escalate rule, or a rule citing Art. 14"),
            (12, "record-keeping (logging)", WARNING, self._cites(12),
             "add a rule citing Art. 12 (e.g. on missing_documentation or retention_violations)"),
            (15, "accuracy, robustness and cybersecurity", WARNING,
             [r for r in self._cites(15) if r.has_measure and r.category in {"model_perf", "security"}],
             "add a model_perf or security metric/signal rule citing Art. 15"),
            (73, "serious-incident reporting", WARNING,
             any(r.action == "escalate" for r in self.rules) or self._cites(73),
             "add an escalate rule, or a rule citing Art. 73"),
            (10, "data and data governance", INFO,
             [r for r in self._cites(10) if r.category in {"data_quality", "fairness"}],
             "add a data_quality or fairness rule citing Art. 10"),
        ]  # fmt: skip
        for article, topic, level, covered, hint in obligations:
            if covered:
                continue
            ref = f"Art. {article}"
            self.add(
                "regulatory-gap",
                f"EU AI Act {ref} ({topic}) applies to {whom}, and no rule covers it; {hint}",
                ("spec", "rules"),
                key=True,
                level=level,
                references=({"framework": "eu_ai_act", "ref": ref},),
                article=ref,
                hint=hint,
            )

    def _check_prohibited(self, spec: dict[str, Any], risk: list[str] | None) -> None:
        cite = ({"framework": "eu_ai_act", "ref": "Art. 5"},)
        if risk is not None and "prohibited" in risk and spec.get("default_action") == "allow":
            self.add("prohibited-practice-allowed", "the scope names prohibited systems and default_action is "
                     "'allow': a prohibited system no rule matches is allowed", ("spec", "default_action"),
                     references=cite, article="Art. 5")  # fmt: skip
        subject = ("attribute", "risk_class")
        for rule in self.rules:
            constraint = rule.constraints.get(subject)
            named = any(p[:2] != ("spec", "scope") for p in rule.condition_paths.get(subject, []))
            if (
                rule.action == "allow"
                and rule.unreachable is None
                and named
                and isinstance(constraint, Values)
                and constraint.positive
                and "prohibited" in constraint.values
            ):
                self.add("prohibited-practice-allowed", f"rule {rule.id!r} allows systems of the prohibited risk "
                         "class", rule.condition_paths[subject][-1], rule_id=rule.id, references=cite,
                         article="Art. 5")  # fmt: skip


class _GroupIndex:
    """Rules of one signature, indexed by the values of one attribute all of them pin to a finite set, so a
    rule is compared only with rules that share a value (e.g. the same ``system``)."""

    def __init__(self, members: list[_Rule]):
        self.members = members
        self.subject: Subject | None = None
        self.by_value: dict[str, list[_Rule]] = defaultdict(list)
        # Index on the attribute with the most distinct values (the most selective), among those every member
        # pins to a finite set.
        best = 0
        for subject in sorted(s for s in members[0].constraints if s[0] == "attribute"):
            if all(m.constraints[subject].positive for m in members):  # type: ignore[union-attr]
                distinct = len({v for m in members for v in m.constraints[subject].values})  # type: ignore[union-attr]
                if distinct > best:
                    self.subject, best = subject, distinct
        if self.subject is not None:
            for member in members:
                for value in member.constraints[self.subject].values:  # type: ignore[union-attr]
                    self.by_value[value].append(member)

    def candidates(self, rule: _Rule) -> list[_Rule]:
        """Rules of this group that may contain ``rule`` (a superset must share each of its values)."""
        if self.subject is None:
            return self.members
        values = rule.constraints[self.subject]
        if not isinstance(values, Values) or not values.positive:
            return []  # a finite set never contains a co-finite one
        return self.by_value.get(min(values.values), [])

    def overlap_candidates(self, rule: _Rule) -> Iterator[_Rule]:
        if self.subject is None:
            yield from self.members
            return
        seen: set[int] = set()
        for value in rule.constraints[self.subject].values:  # type: ignore[union-attr]
            for member in self.by_value.get(value, ()):
                if member.index not in seen:
                    seen.add(member.index)
                    yield member


def _contains(outer: _Rule, inner: _Rule) -> bool:
    """``outer`` matches everything ``inner`` matches (each of outer's constraints is looser)."""
    for subject, constraint in outer.constraints.items():
        other = inner.constraints.get(subject)
        if other is None or type(other) is not type(constraint) or not constraint.contains(other):
            return False
    return True


def _json_type(value: Any) -> str:
    for python_type, name in ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"),
                              (list, "array"), (dict, "object")):  # fmt: skip
        if isinstance(value, python_type):
            return name
    return "null"


def _short(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "…"


def _short_message(message: str) -> str:
    return message if len(message) <= 300 else message[:297] + "…"


class _CollectorPause:
    """Keeps CPython's cyclic garbage collector off while a lint runs (threads share one count; the last to
    leave turns it back on, if it was on before the first came in).

    A 1,000-rule lint allocates ~100k short-lived objects that form no reference cycles (reference counting
    frees them all); without the pause they trigger collections that scan the whole process heap, which
    measured at about a third of the lint's time. The work a lint does is bounded (see ``MAX_*``), so the
    pause is too."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = 0
        self._was_enabled = False

    def __enter__(self) -> None:
        with self._lock:
            if self._active == 0:
                self._was_enabled = gc.isenabled()
                gc.disable()
            self._active += 1

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self._active -= 1
            if self._active == 0 and self._was_enabled:
                gc.enable()


_collector_paused = _CollectorPause()


def _position_key(finding: Finding) -> tuple:
    return (finding.line is None, finding.line or 0, finding.column or 0, finding.code)


def policy_lint(
    *,
    text: str | None = None,
    document: Any = None,
    filename: str = "policy.yaml",
    now: datetime | None = None,
) -> LintReport:
    """Lint one policy given as YAML/JSON ``text`` or as an already-parsed ``document``.

    Never raises: unreadable, oversized or hostile input yields ``syntax``/``document-limit``/``schema``
    findings, and an unexpected failure of a check yields one ``internal-error`` finding (and a log entry)
    instead of an exception. Positions are 1-based line/column of the value (or key) a finding is about;
    None when ``document`` was given. Work is bounded (see the ``MAX_*`` constants). No database access.
    """
    linted_at = now or timezone.now()
    filename = filename if isinstance(filename, str) and filename else "policy.yaml"

    def report(findings, linter=None, truncated=False) -> LintReport:
        findings = sorted(findings, key=_position_key)
        coverage = linter.coverage if linter else {c: {s: [] for s in SEVERITIES} for c in CATEGORIES}
        data = linter.parsed.data if linter else None
        metadata = data.get("metadata") if isinstance(data, dict) else None
        policy_id = metadata.get("id") if isinstance(metadata, dict) and isinstance(metadata.get("id"), str) else None
        spec = data.get("spec") if isinstance(data, dict) else None
        rules = spec.get("rules") if isinstance(spec, dict) else None
        return LintReport(
            filename=filename,
            findings=findings,
            coverage=coverage,
            policy_id=policy_id,
            rule_count=len(rules) if isinstance(rules, list) else 0,
            linted_at=linted_at,
            truncated=truncated,
            document=data,
        )

    with _collector_paused:
        try:
            if text is not None:
                if not isinstance(text, str):
                    return report([_finding("syntax", "the policy text must be a string")])
                size = len(text.encode("utf-8", errors="surrogatepass"))
                if size > MAX_DOCUMENT_BYTES:
                    return report([_finding("document-limit", f"the document is {size:,} bytes; at most "
                                            f"{MAX_DOCUMENT_BYTES:,}", line=1, column=1)])  # fmt: skip
                parsed = _parse_text(text, filename)
            else:
                parsed = _normalize_document(document)
            linter = _Linter(parsed)
            rules = None
            if isinstance(parsed.data, dict) and isinstance(parsed.data.get("spec"), dict):
                rules = parsed.data["spec"].get("rules")
            if isinstance(rules, list) and len(rules) > MAX_RULES:
                message = f"{len(rules):,} rules; at most {MAX_RULES:,} per policy"
                linter.add("document-limit", message, ("spec", "rules"))
                return report(linter.findings, linter)
            invalid = linter.check_schema()
            linter.build_rules(invalid)
            linter.check_rules()
            linter.check_pairs()
            linter.check_ladders()
            linter.check_policy()
            return report(linter.findings, linter, linter.truncated)
        except _Stop as stop:
            return report([stop.finding])
        except Exception:  # a bug in a check must not turn a lint into a 500; it is logged and reported
            logger.exception("policy lint failed on %s", filename)
            return report([_finding("internal-error", "the linter failed on this document; the error has been logged")])
