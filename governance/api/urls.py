from django.urls import re_path
from rest_framework_simplejwt.views import TokenBlacklistView, TokenRefreshView

from governance.api import demo, deployments, gateway, policies, predictions, views
from governance.api.auth_views import TokenObtainView
from governance.api.routers import OptionalSlashRouter

router = OptionalSlashRouter()
router.register("teams", views.TeamViewSet, basename="team")
router.register("systems", views.AISystemViewSet, basename="aisystem")
router.register("users", views.UserViewSet, basename="user")
router.register("capabilities", views.CapabilityViewSet, basename="capability")
router.register("control-assessments", views.ControlAssessmentViewSet, basename="controlassessment")
router.register("evaluation-runs", views.EvaluationRunViewSet, basename="evaluationrun")
router.register("audit", views.AuditLogViewSet, basename="auditlog")
router.register("deployments", deployments.DeploymentViewSet, basename="deployment")
router.register("predictions", predictions.PredictionViewSet, basename="prediction")
router.register("demo/runs", demo.DemoRunViewSet, basename="demorun")
router.register("policies", policies.PolicyViewSet, basename="policy")
router.register(r"policies/(?P<policy_ref>[^/]+)/versions", policies.PolicyVersionViewSet, basename="policyversion")

urlpatterns = [
    re_path(r"^auth/token/?$", TokenObtainView.as_view(), name="token_obtain"),
    re_path(r"^auth/token/refresh/?$", TokenRefreshView.as_view(), name="token_refresh"),
    re_path(r"^auth/token/revoke/?$", TokenBlacklistView.as_view(), name="token_revoke"),
    re_path(r"^kpis/?$", views.KPIView.as_view(), name="kpis"),
    re_path(r"^gateway/ai/?$", gateway.GatewayAIView.as_view(), name="gateway_ai"),
    re_path(r"^gateway/llm-generate/?$", gateway.LLMGenerateView.as_view(), name="gateway_llm_generate"),
    re_path(r"^eval/(?P<suite>[^/]+)/run/?$", gateway.EvaluationSuiteRunView.as_view(), name="eval_run"),
    re_path(r"^cicd/gate/?$", gateway.CICDGateView.as_view(), name="cicd_gate"),
    re_path(r"^policies/lint/?$", policies.PolicyLintView.as_view(), name="policy_lint"),
    re_path(r"^policies/schema/?$", policies.PolicySchemaView.as_view(), name="policy_schema"),
    re_path(r"^demo/scenarios/?$", demo.DemoScenarioListView.as_view(), name="demo_scenarios"),
    # The router's routes come after: /policies/lint and /policies/schema are not policies named lint or schema.
    *router.urls,
]
