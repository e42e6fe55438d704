from governance.models.activity import CallerActivity
from governance.models.audit import AuditLog, AuditVerification
from governance.models.base import VigilModel
from governance.models.capabilities import Capability, ControlAssessment, EvaluationRun
from governance.models.changes import AuditedTransaction, GovernedChange
from governance.models.demo import DemoRun, DemoScenario
from governance.models.deployments import Deployment
from governance.models.organization import AISystem, Team, User
from governance.models.policies import ContentFormat, Policy, PolicyVersion, PolicyVersionImmutable
from governance.models.predictive import PredictiveGovernance, PredictorModel
from governance.models.ratelimit import RateLimit

__all__ = [
    "AISystem",
    "AuditLog",
    "AuditVerification",
    "AuditedTransaction",
    "CallerActivity",
    "Capability",
    "ContentFormat",
    "ControlAssessment",
    "DemoRun",
    "DemoScenario",
    "Deployment",
    "EvaluationRun",
    "GovernedChange",
    "Policy",
    "PolicyVersion",
    "PolicyVersionImmutable",
    "PredictiveGovernance",
    "PredictorModel",
    "RateLimit",
    "Team",
    "User",
    "VigilModel",
]
