from governance.models.activity import CallerActivity
from governance.models.audit import AuditLog, AuditVerification
from governance.models.base import VigilModel
from governance.models.capabilities import Capability, ControlAssessment, EvaluationRun
from governance.models.organization import AISystem, Team, User
from governance.models.ratelimit import RateLimit

__all__ = [
    "AISystem",
    "AuditLog",
    "AuditVerification",
    "CallerActivity",
    "Capability",
    "ControlAssessment",
    "EvaluationRun",
    "RateLimit",
    "Team",
    "User",
    "VigilModel",
]
