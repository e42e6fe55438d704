"""Enumerations shared across Vigil. Values are lowercase so the database, logs and API read alike."""

from django.db import models


class Severity(models.TextChoices):
    CRITICAL = "critical", "Critical"
    HIGH = "high", "High"
    MEDIUM = "medium", "Medium"
    LOW = "low", "Low"
    INFO = "info", "Info"


SEVERITY_RANK = {Severity.CRITICAL: 4, Severity.HIGH: 3, Severity.MEDIUM: 2, Severity.LOW: 1, Severity.INFO: 0}


class EntityType(models.TextChoices):
    MODEL = "model", "Model"
    SYSTEM = "system", "System"
    DATASET = "dataset", "Dataset"


class RiskClass(models.TextChoices):
    """EU AI Act risk tiers (Art. 5 prohibited, Art. 6 high-risk, Art. 50 limited, minimal)."""

    PROHIBITED = "prohibited", "Prohibited (Art. 5)"
    HIGH = "high", "High-risk (Art. 6)"
    LIMITED = "limited", "Limited risk (Art. 50)"
    MINIMAL = "minimal", "Minimal risk"


class Role(models.TextChoices):
    """Roles are Django groups of these names, created by migration."""

    ADMIN = "admin", "Admin"
    GOVERNANCE_LEAD = "governance_lead", "Governance lead"
    REVIEWER = "reviewer", "Reviewer"
    SECURITY = "security", "Security"
    VIEWER = "viewer", "Viewer"
    INGEST = "ingest", "Service account: ingest"
    CICD = "cicd", "Service account: CI/CD"


HUMAN_ROLES = frozenset({Role.ADMIN, Role.GOVERNANCE_LEAD, Role.REVIEWER, Role.SECURITY, Role.VIEWER})
SERVICE_ROLES = frozenset({Role.INGEST, Role.CICD})


class Framework(models.TextChoices):
    EU_AI_ACT = "eu_ai_act", "EU AI Act"
    NIST_AI_RMF = "nist_ai_rmf", "NIST AI RMF"
    ISO_42001 = "iso_42001", "ISO/IEC 42001"


class AssessmentStatus(models.TextChoices):
    EFFECTIVE = "effective", "Effective"
    PARTIALLY_EFFECTIVE = "partially_effective", "Partially effective"
    INEFFECTIVE = "ineffective", "Ineffective"
    NOT_ASSESSED = "not_assessed", "Not assessed"


class ActorType(models.TextChoices):
    USER = "user", "User"
    SERVICE = "service", "Service account"
    SYSTEM = "system", "System"


class AuditAction(models.TextChoices):
    """Every audited state change. Dotted values; never reuse or rename one (auditors query by it)."""

    CONFIG_UPDATED = "config.updated", "Config value changed"
    CONFIG_SEEDED = "config.seeded", "Config key seeded"
    USER_CREATED = "user.created", "User created"
    USER_ROLES_CHANGED = "user.roles_changed", "User roles or teams changed"
    SERVICE_ACCOUNT_CREATED = "service_account.created", "Service account created"
    SERVICE_ACCOUNT_ROTATED = "service_account.rotated", "Service account secret rotated"
    TEAM_CREATED = "team.created", "Team created"
    TEAM_UPDATED = "team.updated", "Team updated"
    SYSTEM_REGISTERED = "system.registered", "AI system registered"
    SYSTEM_UPDATED = "system.updated", "AI system updated"
    CONTROL_ASSESSED = "control.assessed", "Control assessed"
    EVALUATION_RECORDED = "evaluation.recorded", "Evaluation run recorded"
    AUDIT_CHAIN_BROKEN = "audit.chain_broken", "Audit chain verification failed"
    SCHEDULE_SYNCED = "schedule.synced", "Periodic task schedule synced"
    EVENTS_INGESTED = "events.ingested", "Event batch ingested"
    ALERT_FIRED = "alert.fired", "Alert fired"
    ALERT_RESOLVED = "alert.resolved", "Alert resolved"
    DETECTION_RULE_UPDATED = "detection_rule.updated", "Detection rule changed"
    INCIDENT_OPENED = "incident.opened", "Incident opened"
    REVIEW_CREATED = "review.created", "Review item queued"
    SIMULATION_STARTED = "simulation.started", "Simulation started"
    SIMULATION_STOPPED = "simulation.stopped", "Simulation stopped"
    SIMULATION_FINISHED = "simulation.finished", "Simulation finished"
    SIMULATION_FAILED = "simulation.failed", "Simulation failed"
    REVIEW_DECIDED = "review.decided", "Review item decided"
    REVIEW_ASSISTED = "review.assisted", "Auto-assist run"
    REVIEW_ASSIGNED = "review.assigned", "Review item assigned"
    INCIDENT_JOINED = "incident.joined", "Escalation joined an open incident"
    INCIDENT_ACKNOWLEDGED = "incident.acknowledged", "Incident acknowledged"
    INCIDENT_MITIGATED = "incident.mitigated", "Incident mitigated"
    INCIDENT_RESOLVED = "incident.resolved", "Incident resolved"
    INCIDENT_CLOSED = "incident.closed", "Incident closed"
    INCIDENT_REOPENED = "incident.reopened", "Incident reopened"
    INCIDENT_ESCALATED = "incident.escalated", "Incident escalated"
    INCIDENT_ASSIGNED = "incident.assigned", "Incident assigned"
    INCIDENT_RCA_UPDATED = "incident.rca_updated", "Incident RCA updated"
    INCIDENT_MARKED_SERIOUS = "incident.marked_serious", "Incident marked serious (EU AI Act Art. 73)"
    INCIDENT_REPORTED = "incident.reported", "Serious incident reported to the authority"
    FOLLOW_UP_CREATED = "follow_up.created", "Follow-up scheduled"
    FOLLOW_UP_COMPLETED = "follow_up.completed", "Follow-up completed"
    FOLLOW_UP_ESCALATED = "follow_up.escalated", "Overdue follow-up escalated"
    RCA_TEMPLATE_UPDATED = "rca_template.updated", "RCA template changed"
    GATEWAY_CALLED = "gateway.called", "AI gateway call"
    EVAL_RUN = "eval.run", "Evaluation suite run"
    CICD_GATE_DECIDED = "cicd.gate_decided", "CI/CD gate decision"
    AUTO_APPROVAL_POLICY_CREATED = "auto_approval_policy.created", "Auto-approval policy created"
    AUTO_APPROVAL_POLICY_UPDATED = "auto_approval_policy.updated", "Auto-approval policy changed"
    AUTO_APPROVAL_POLICY_ENABLED = "auto_approval_policy.enabled", "Auto-approval policy enabled"
    AUTO_APPROVAL_POLICY_DISABLED = "auto_approval_policy.disabled", "Auto-approval policy disabled"
    AUTO_APPROVAL_POLICY_DELETED = "auto_approval_policy.deleted", "Auto-approval policy deleted"
    SPOT_CHECK_RECORDED = "spot_check.recorded", "Spot-check verdict recorded"
    ASSIST_MODEL_TRAINED = "assist_model.trained", "Auto-assist model trained"
    BYPASS_DETECTED = "security.bypass_detected", "Governance bypass detected"
    DEPLOYMENT_RECORDED = "deployment.recorded", "Deployment recorded"
    REVIEW_REQUESTED = "review.requested", "Review requested"
    POLICY_CREATED = "policy.created", "Policy created"
    POLICY_VERSION_CREATED = "policy.version_created", "Policy version created"
    POLICY_ACTIVATED = "policy.activated", "Policy version activated"
    POLICY_DEACTIVATED = "policy.deactivated", "Policy deactivated"
    POLICY_SHADOW_REPLAYED = "policy.shadow_replayed", "Policy version shadow-replayed"
    PREDICTOR_TRAINED = "predictor.trained", "Predictive model trained"
    PREDICTOR_ACTIVATED = "predictor.activated", "Predictive model activated"
    PREDICTION_REVIEW_OPENED = "prediction.review_opened", "Proactive review opened for a prediction"
    DEMO_RUN_STARTED = "demo.run_started", "Golden demo run started"
    DEMO_RUN_FINISHED = "demo.run_finished", "Golden demo run finished"
    DEMO_EVIDENCE_EXPORTED = "demo.evidence_exported", "Golden demo evidence package exported"


class GateVerdict(models.TextChoices):
    """What the CI/CD gate said about a deployed artifact: its latest decision before the deployment, or
    ``missing`` when it was never asked."""

    ALLOW = "allow", "Allowed"
    DENY = "deny", "Denied"
    MISSING = "missing", "No gate decision"


class EvaluationProvenance(models.TextChoices):
    """Where an evaluation result comes from: a run of the gateway's own suite through the upstream, or a
    result someone reported (an external tool, a CI job, a person). A reported result of a suite the gateway
    runs is unverified: it never counts as a pass at the CI/CD gate."""

    GATEWAY = "gateway", "Gateway run"
    REPORTED = "reported", "Reported"


class PredictionType(models.TextChoices):
    """What predictive governance forecasts for an AI system (the plan's ``prediction_type``)."""

    DRIFT_RISK = "drift_risk", "Drift risk"
    COMPLIANCE_RISK = "compliance_risk", "Compliance risk"
    INCIDENT_PROBABILITY = "incident_probability", "Incident probability"


class PredictionOutcome(models.TextChoices):
    """How a prediction turned out once its timeframe passed (the predicted-vs-actual panel)."""

    PENDING = "pending", "Pending"
    OCCURRED = "occurred", "Occurred"
    NOT_OCCURRED = "not_occurred", "Did not occur"


class PredictorSource(models.TextChoices):
    SYNTHETIC = "synthetic", "Synthetic history with known onsets"
    HISTORY = "history", "This installation's own history"


class DemoCategory(models.TextChoices):
    """Who a golden-demo scenario is for; the mode of a run is its scenario's category."""

    SALES = "sales", "Sales"
    AUDIT = "audit", "Audit"
    INVESTOR = "investor", "Investor"
    TRAINING = "training", "Training"


class DemoRunStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


ACTIVE_DEMO_RUN_STATUSES = (DemoRunStatus.PENDING, DemoRunStatus.RUNNING)
