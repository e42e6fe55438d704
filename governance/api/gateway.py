"""The AI gateway endpoints that AI callers use (``/gateway/ai``, ``/gateway/llm-generate``,
``/eval/{suite}/run``) and the minimal CI/CD gate (``/cicd/gate``).

Thin edges over ``governance.services.gateway``: validate, resolve the AI system within the caller's teams
(404 outside them), call the service, shape the answer. Upstream failures answer with the error envelope:
503 ``upstream_not_configured``, 504 ``upstream_timeout``, 502 ``upstream_error``.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from governance.api.serializers import EvaluationRunSerializer
from governance.choices import SERVICE_ROLES, Role
from governance.models import AISystem
from governance.selectors import ai_system_get_by_ref
from governance.services.cicd_gate import MAX_EVAL_RUNS, MAX_POLICIES, GateRequestInvalid, cicd_gate_decide
from governance.services.gateway import (
    EVALUATION_SUITES,
    EvaluationInvalid,
    GatewayError,
    evaluation_suite_get,
    evaluation_suite_run,
    gateway_chat_complete,
    gateway_generate,
)
from oversight.api.serializers import ErrorEnvelopeSerializer

# Service accounts call the gateway for the AI systems of their teams; people who run it are leads/admins.
GATEWAY_ROLES = frozenset({Role.ADMIN, Role.GOVERNANCE_LEAD, *SERVICE_ROLES})
CICD_GATE_ROLES = frozenset({Role.ADMIN, Role.GOVERNANCE_LEAD, Role.CICD})
MAX_MESSAGES = 200
MAX_CONTENT_CHARS = 100_000
MAX_TOKENS_LIMIT = 128_000


class UpstreamFailed(exceptions.APIException):
    """A :class:`GatewayError` as an API error with its status (502/503/504) and code."""

    def __init__(self, error: GatewayError):
        self.status_code = error.http_status
        super().__init__(detail=error.message, code=error.code)


def _system_for(request, ref: str) -> AISystem:
    system = ai_system_get_by_ref(ref=ref, user=request.user)
    if system is None:
        raise exceptions.NotFound(f"No AI system {ref!r} in your teams.")
    return system


def _endpoint(request) -> str:
    return request.path


_UPSTREAM_ERRORS = {
    400: OpenApiResponse(ErrorEnvelopeSerializer, description="Invalid input; the fields are named."),
    403: OpenApiResponse(ErrorEnvelopeSerializer, description="Your role may not use the gateway."),
    404: OpenApiResponse(ErrorEnvelopeSerializer, description="No such AI system in your teams."),
    502: OpenApiResponse(ErrorEnvelopeSerializer, description="The upstream failed, refused or was unreachable."),
    503: OpenApiResponse(ErrorEnvelopeSerializer, description="No upstream configured (VIGIL_GATEWAY_UPSTREAM_URL)."),
    504: OpenApiResponse(ErrorEnvelopeSerializer, description="The upstream did not answer in time."),
}

_GATEWAY_INFO = inline_serializer(
    "GatewayInfo",
    fields={
        "request_id": serializers.CharField(help_text="Sent upstream as X-Request-ID; in the audit entry."),
        "latency_ms": serializers.IntegerField(),
    },
)


class ChatMessageSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=["system", "user", "assistant", "tool"])
    content = serializers.CharField(max_length=MAX_CONTENT_CHARS, trim_whitespace=False)


class GatewayAISerializer(serializers.Serializer):
    system = serializers.CharField(max_length=200, help_text="The AI system's id or unique name.")
    model = serializers.CharField(max_length=200, required=False, help_text="Upstream model; its default if unset.")
    # A ListField (not many=True) so an empty list is reported on "messages" itself, items on "messages.<i>".
    messages = serializers.ListField(child=ChatMessageSerializer(), allow_empty=False, max_length=MAX_MESSAGES)
    max_tokens = serializers.IntegerField(min_value=1, max_value=MAX_TOKENS_LIMIT, required=False)
    temperature = serializers.FloatField(min_value=0.0, max_value=2.0, required=False)


class GatewayAIResponseSerializer(serializers.Serializer):
    choices = serializers.ListField(child=serializers.DictField())
    usage = serializers.DictField(required=False)
    gateway = _GATEWAY_INFO


class LLMGenerateSerializer(serializers.Serializer):
    system = serializers.CharField(max_length=200, help_text="The AI system's id or unique name.")
    prompt = serializers.CharField(max_length=MAX_CONTENT_CHARS, trim_whitespace=False)
    model = serializers.CharField(max_length=200, required=False)
    max_tokens = serializers.IntegerField(min_value=1, max_value=MAX_TOKENS_LIMIT, required=False)


class LLMGenerateResponseSerializer(serializers.Serializer):
    text = serializers.CharField()
    usage = inline_serializer(
        "GatewayUsage",
        fields={
            "prompt_tokens": serializers.IntegerField(),
            "completion_tokens": serializers.IntegerField(),
            "total_tokens": serializers.IntegerField(),
        },
    )
    gateway = _GATEWAY_INFO


class GatewayAIView(APIView):
    """Forward an OpenAI-compatible chat completion for one AI system; audited ``gateway.called``."""

    write_roles = GATEWAY_ROLES

    @extend_schema(
        summary="Chat completion through the governed AI gateway",
        request=GatewayAISerializer,
        responses={200: GatewayAIResponseSerializer, **_UPSTREAM_ERRORS},
    )
    def post(self, request):
        body = GatewayAISerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        system = _system_for(request, data["system"])
        try:
            result = gateway_chat_complete(
                caller=request.user,
                system=system,
                messages=data["messages"],
                endpoint=_endpoint(request),
                model=data.get("model"),
                max_tokens=data.get("max_tokens"),
                temperature=data.get("temperature"),
            )
        except GatewayError as exc:
            raise UpstreamFailed(exc) from exc
        return Response({**result.answer, "gateway": result.gateway_info()})


class LLMGenerateView(APIView):
    """One prompt in, text out: a convenience wrapper over the same gateway call (same audit)."""

    write_roles = GATEWAY_ROLES

    @extend_schema(
        summary="Generate text from one prompt through the governed AI gateway",
        request=LLMGenerateSerializer,
        responses={200: LLMGenerateResponseSerializer, **_UPSTREAM_ERRORS},
    )
    def post(self, request):
        body = LLMGenerateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        system = _system_for(request, data["system"])
        try:
            result = gateway_generate(
                caller=request.user,
                system=system,
                prompt=data["prompt"],
                endpoint=_endpoint(request),
                model=data.get("model"),
                max_tokens=data.get("max_tokens"),
            )
        except GatewayError as exc:
            raise UpstreamFailed(exc) from exc
        return Response({"text": result.text, "usage": result.usage.as_dict(), "gateway": result.gateway_info()})


class EvaluationSuiteRunSerializer(serializers.Serializer):
    system = serializers.CharField(max_length=200, help_text="The AI system's id or unique name.")
    metric = serializers.CharField(max_length=120, required=False, help_text="The suite's metric (optional).")
    dataset = serializers.ListField(
        child=serializers.DictField(),
        required=False,
        help_text="Cases instead of the suite's built-in ones (≤ 50): [{prompt, expected?, groups?}].",
    )
    threshold = serializers.FloatField(required=False, help_text="Pass mark in [0, 1]; the suite's default if unset.")
    model = serializers.CharField(max_length=200, required=False)


class EvaluationSuiteRunResponseSerializer(EvaluationRunSerializer):
    gateway = inline_serializer(
        "EvaluationGatewayInfo",
        fields={
            "request_id": serializers.CharField(),
            "latency_ms": serializers.IntegerField(),
            "calls": serializers.IntegerField(help_text="Upstream requests the run made."),
        },
    )

    class Meta(EvaluationRunSerializer.Meta):
        fields = [*EvaluationRunSerializer.Meta.fields, "gateway"]


class EvaluationSuiteRunView(APIView):
    """Run a declared evaluation suite against an AI system through the upstream and record the result as an
    ``EvaluationRun`` (audited ``evaluation.recorded`` and ``eval.run``)."""

    write_roles = GATEWAY_ROLES

    @extend_schema(
        summary="Run an evaluation suite through the AI gateway",
        parameters=[
            OpenApiParameter(
                "suite", str, OpenApiParameter.PATH, enum=sorted(EVALUATION_SUITES), description="The suite to run."
            )
        ],
        request=EvaluationSuiteRunSerializer,
        responses={
            201: EvaluationSuiteRunResponseSerializer,
            **_UPSTREAM_ERRORS,
            404: OpenApiResponse(
                ErrorEnvelopeSerializer, description="Unknown suite, or no such system in your teams."
            ),
        },
    )
    def post(self, request, suite: str):
        evaluation_suite = evaluation_suite_get(suite)
        if evaluation_suite is None:
            raise exceptions.NotFound(f"No evaluation suite {suite!r}; suites: {', '.join(sorted(EVALUATION_SUITES))}.")
        body = EvaluationSuiteRunSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        system = _system_for(request, data["system"])
        try:
            outcome = evaluation_suite_run(
                caller=request.user,
                system=system,
                suite=evaluation_suite,
                endpoint=_endpoint(request),
                metric=data.get("metric"),
                dataset=data.get("dataset"),
                threshold=data.get("threshold"),
                model=data.get("model"),
            )
        except EvaluationInvalid as exc:
            raise exceptions.ValidationError(exc.fields) from exc
        except GatewayError as exc:
            raise UpstreamFailed(exc) from exc
        answer = EvaluationRunSerializer(outcome.run, context={"request": request}).data
        return Response({**answer, "gateway": outcome.gateway_info()}, status=status.HTTP_201_CREATED)


class CICDGateSerializer(serializers.Serializer):
    system = serializers.CharField(max_length=200, help_text="The AI system's id or unique name.")
    artifact = serializers.CharField(max_length=500, help_text="What is to be deployed (image digest, model URI…).")
    version = serializers.CharField(
        max_length=200, required=False, default="", allow_blank=True, help_text="The artifact's version, recorded."
    )
    eval_run_ids = serializers.ListField(
        child=serializers.CharField(max_length=64),
        required=False,
        default=list,
        max_length=MAX_EVAL_RUNS,
        help_text="Evaluation runs of this artifact: each must be the system's and pass; they are the freshest "
        "evidence for the policies. Without them the latest result of every suite/metric counts.",
    )
    policy_ids = serializers.ListField(
        child=serializers.CharField(max_length=200),
        required=False,
        default=list,
        max_length=MAX_POLICIES,
        help_text="Policies to apply (id or key, optionally key@version); default: every active policy whose "
        "scope includes the system.",
    )


class GatePolicyOutcomeSerializer(serializers.Serializer):
    policy = serializers.CharField()
    version = serializers.IntegerField(allow_null=True)
    valid = serializers.BooleanField()
    action = serializers.CharField(
        allow_null=True, help_text="allow, deny, escalate, require_review or not_applicable."
    )
    rule_id = serializers.CharField(allow_null=True, required=False)
    severity = serializers.CharField(allow_null=True, required=False)
    level = serializers.CharField(allow_null=True, required=False)
    reasons = serializers.ListField(child=serializers.CharField(), required=False)
    missing = serializers.ListField(child=serializers.CharField(), required=False)


class CICDGateResponseSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(choices=["allow", "deny"])
    reasons = serializers.ListField(child=serializers.CharField(), help_text="Why it was denied (empty on allow).")
    checked_at = serializers.DateTimeField()
    system = serializers.UUIDField()
    system_name = serializers.CharField()
    artifact = serializers.CharField()
    version = serializers.CharField()
    policy_ids = serializers.ListField(child=serializers.CharField())
    policies = GatePolicyOutcomeSerializer(many=True, help_text="Each policy considered, with its decision.")
    eval_run_ids = serializers.ListField(child=serializers.UUIDField())
    audit_entry = serializers.UUIDField(help_text="The cicd.gate_decided audit entry of this decision.")


class CICDGateView(APIView):
    """The CI/CD gate: deny when a policy is invalid or does not allow, an evaluation fails its threshold, or the
    system has an open critical/serious incident or a pending high/critical review; allow otherwise. Every
    decision is audited ``cicd.gate_decided``."""

    write_roles = CICD_GATE_ROLES

    @extend_schema(
        summary="Ask whether an artifact of an AI system may be deployed",
        request=CICDGateSerializer,
        responses={
            200: CICDGateResponseSerializer,
            400: _UPSTREAM_ERRORS[400],
            403: OpenApiResponse(ErrorEnvelopeSerializer, description="Only cicd service accounts, leads, admins."),
            404: _UPSTREAM_ERRORS[404],
        },
    )
    def post(self, request):
        body = CICDGateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        system = _system_for(request, data["system"])
        try:
            decision = cicd_gate_decide(
                caller=request.user,
                system=system,
                artifact=data["artifact"],
                version=data["version"],
                policy_ids=data["policy_ids"],
                eval_run_ids=data["eval_run_ids"],
            )
        except GateRequestInvalid as exc:
            raise exceptions.ValidationError(exc.fields) from exc
        return Response(
            {
                "decision": decision.decision,
                "reasons": decision.reasons,
                "checked_at": decision.checked_at,
                "system": system.pk,
                "system_name": system.name,
                "artifact": decision.artifact,
                "version": decision.version,
                "policy_ids": decision.policy_ids,
                "policies": decision.policies,
                "eval_run_ids": decision.evaluation_run_ids,
                "audit_entry": decision.audit_entry.pk,
            }
        )
