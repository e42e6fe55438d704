"""Policy-as-code endpoints: ``POST /policies/lint`` (lint a policy document), ``GET /policies/schema``
(the published JSON Schema of the format), and ``/policies`` with ``/policies/{id}/versions``: versioned,
immutable, linted policies and their activation (thin edges over ``governance.services.policies``).
Any authenticated caller may lint and read the schema; they read nothing and write nothing but the
rate-limit counter.

The lint answers 200 with the report even when the policy has errors (the lint itself succeeded); 400 only
when the request is malformed (the field is named), 413 when the body is over 1 MB.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import django_filters
from django.db.models import Q
from django.http import Http404
from django.utils.functional import cached_property
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import exceptions, mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from governance.api.errors import Conflict, FieldConflict, PayloadTooLarge
from governance.api.parsers import VigilJSONParser
from governance.choices import HUMAN_ROLES, Role
from governance.models import Policy, PolicyVersion
from governance.selectors import as_uuid, is_uuid, policy_get_by_ref, policy_list
from governance.services.policies import (
    PolicyInvalid,
    PolicyKeyTaken,
    PolicyPermissionDenied,
    PolicyTooLarge,
    PolicyVersionDuplicate,
    PolicyVersionNotValidated,
    policy_create,
    policy_deactivate,
    policy_may_write,
    policy_version_activate,
    policy_version_create,
    policy_version_diff,
)
from governance.services.policy_lint import MAX_DOCUMENT_BYTES, policy_lint, policy_schema
from governance.services.policy_replay import (
    DEFAULT_REPLAY_DAYS,
    MAX_REPLAY_DAYS,
    PolicyNotReplayable,
    policy_shadow_replay,
)
from oversight.api.serializers import ErrorEnvelopeSerializer

YAML_FILENAME = "request.yaml"


class YAMLTextParser(BaseParser):
    """A raw YAML body, handed to the view as ``{"text": …}`` (the linter parses it, with positions)."""

    media_type = "application/yaml"

    def parse(self, stream, media_type=None, parser_context=None):
        raw = stream.read() if stream is not None else b""
        try:
            return {"text": raw.decode("utf-8-sig"), "filename": YAML_FILENAME}
        except UnicodeDecodeError as exc:
            raise exceptions.ParseError(f"the YAML body is not UTF-8 text ({exc.reason})") from exc


class TextYAMLParser(YAMLTextParser):
    media_type = "text/yaml"


class XYAMLParser(YAMLTextParser):
    media_type = "application/x-yaml"


class SARIFRenderer(JSONRenderer):
    """Selected by ``?format=sarif`` or ``Accept: application/sarif+json``."""

    media_type = "application/sarif+json"
    format = "sarif"


class FormatNegotiation(DefaultContentNegotiation):
    """An unknown ``?format=`` is a 400 naming the parameter, not DRF's bare 404."""

    def select_renderer(self, request, renderers, format_suffix=None):
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except (Http404, exceptions.NotFound) as exc:
            raise exceptions.ValidationError({"format": ["must be json or sarif"]}) from exc


class PolicyLintRequestSerializer(serializers.Serializer):
    document = serializers.JSONField(required=False, allow_null=True, help_text="The policy as a JSON object.")
    text = serializers.CharField(
        required=False, allow_blank=True, trim_whitespace=False, help_text="The policy as YAML or JSON text."
    )
    filename = serializers.CharField(
        required=False, max_length=255, help_text="Names the document in the report (and its format: *.json)."
    )

    def validate(self, attrs):
        has_document, has_text = "document" in self.initial_data, "text" in attrs
        if has_document and has_text:
            raise serializers.ValidationError({"document": ["send either document or text, not both"]})
        if not has_document and not has_text:
            raise serializers.ValidationError(
                {"document": ["send the policy as document (a JSON object) or as text (YAML or JSON)"]}
            )
        return attrs


class LintLocationSerializer(serializers.Serializer):
    path = serializers.CharField()
    line = serializers.IntegerField(allow_null=True)
    column = serializers.IntegerField(allow_null=True)
    rule_id = serializers.CharField(allow_null=True)


class LintFindingSerializer(LintLocationSerializer):
    code = serializers.CharField(help_text="Finding class id, e.g. VGL030.")
    name = serializers.CharField(help_text="Finding class name, e.g. conflicting-rules.")
    level = serializers.ChoiceField(choices=["error", "warning", "info"])
    message = serializers.CharField()
    references = serializers.ListField(child=serializers.DictField(child=serializers.CharField()))
    article = serializers.CharField(allow_null=True, help_text="The EU AI Act article a regulatory finding cites.")
    hint = serializers.CharField(allow_null=True)
    related = LintLocationSerializer(many=True)


class LintCountsSerializer(serializers.Serializer):
    error = serializers.IntegerField()
    warning = serializers.IntegerField()
    info = serializers.IntegerField()


class LintCoverageSerializer(serializers.Serializer):
    categories = serializers.ListField(child=serializers.CharField())
    severities = serializers.ListField(child=serializers.CharField())
    matrix = serializers.DictField(help_text="{category: {severity: [rule ids]}}")
    gaps = serializers.ListField(child=serializers.ListField(child=serializers.CharField()))


class PolicyLintReportSerializer(serializers.Serializer):
    linter = serializers.DictField(child=serializers.CharField())
    filename = serializers.CharField()
    policy_id = serializers.CharField(allow_null=True)
    rule_count = serializers.IntegerField()
    linted_at = serializers.DateTimeField()
    ok = serializers.BooleanField(help_text="No error-level finding.")
    counts = LintCountsSerializer()
    truncated = serializers.BooleanField(help_text="A work bound was hit; not every finding is listed.")
    findings = LintFindingSerializer(many=True)
    coverage = LintCoverageSerializer()


# A policy as requests carry it: JSON ({"document"} or {"text"}) or a raw YAML body.
_POLICY_SUBMISSION = {
    "application/json": PolicyLintRequestSerializer,
    "application/yaml": OpenApiTypes.STR,
    "text/yaml": OpenApiTypes.STR,
}


class PolicyLintView(APIView):
    """Lint a policy: JSON ``{"document": {...}}`` or ``{"text": "...", "filename"?: "..."}``, or a raw
    ``application/yaml`` / ``text/yaml`` body. ``?format=sarif`` answers SARIF 2.1.0."""

    permission_classes = [IsAuthenticated]
    parser_classes = [VigilJSONParser, YAMLTextParser, TextYAMLParser, XYAMLParser]
    renderer_classes = [JSONRenderer, SARIFRenderer]
    content_negotiation_class = FormatNegotiation

    @extend_schema(
        summary="Lint an AI-governance policy document",
        parameters=[
            OpenApiParameter(
                "format",
                str,
                OpenApiParameter.QUERY,
                required=False,
                enum=["json", "sarif"],
                description="json (default): the lint report; sarif: a SARIF 2.1.0 log.",
            ),
        ],  # fmt: skip
        request=_POLICY_SUBMISSION,
        responses={
            200: OpenApiResponse(PolicyLintReportSerializer, description="The report (also when it has errors)."),
            400: OpenApiResponse(ErrorEnvelopeSerializer, description="Malformed request; the field is named."),
            413: OpenApiResponse(ErrorEnvelopeSerializer, description=f"Body over {MAX_DOCUMENT_BYTES:,} bytes."),
        },
    )
    def post(self, request):
        if len(request.body) > MAX_DOCUMENT_BYTES:
            too_large = PayloadTooLarge(detail=f"the policy request is at most {MAX_DOCUMENT_BYTES:,} bytes")
            too_large.fields = {"body": [f"at most {MAX_DOCUMENT_BYTES} bytes"]}
            raise too_large
        if not isinstance(request.data, dict):
            raise exceptions.ValidationError({"document": ["the body must be a JSON object with document or text"]})
        body = PolicyLintRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        filename = body.validated_data.get("filename", "policy.json" if "document" in request.data else "policy.yaml")
        if "document" in request.data:
            report = policy_lint(document=request.data["document"], filename=filename)
        else:
            report = policy_lint(text=body.validated_data["text"], filename=filename)
        if request.accepted_renderer.format == "sarif":
            return Response(report.as_sarif())
        return Response(report.as_json())


class PolicySchemaView(APIView):
    """The JSON Schema (2020-12) of the policy document format."""

    permission_classes = [IsAuthenticated]

    @extend_schema(summary="The policy document JSON Schema", responses={200: OpenApiTypes.OBJECT})
    def get(self, request):
        return Response(policy_schema())


# --- policies and their versions ---------------------------------------------------------------------------
POLICY_READERS = HUMAN_ROLES | {Role.CICD}
POLICY_WRITERS = frozenset({Role.ADMIN, Role.GOVERNANCE_LEAD})


class ShadowReplayRequestSerializer(serializers.Serializer):
    days = serializers.IntegerField(min_value=1, max_value=MAX_REPLAY_DAYS, default=DEFAULT_REPLAY_DAYS)


class PolicyVersionNotValidatedConflict(Conflict):
    default_code = "policy_version_not_validated"

    def __init__(self, exc: PolicyVersionNotValidated):
        self.fields = {"version": [f"has {exc.error_count} lint error(s); only a validated version can be activated"]}
        super().__init__(detail=str(exc))


@contextmanager
def policy_service_errors() -> Iterator[None]:
    """The policy services' refusals as API errors: 413 over 1 MB, 409 for a taken key, identical content or
    an unvalidated version, 400 for bad input, 403 for a team the caller may not write."""
    try:
        yield
    except PolicyTooLarge as exc:
        too_large = PayloadTooLarge(detail=str(exc))
        too_large.fields = exc.fields
        raise too_large from exc
    except (PolicyKeyTaken, PolicyVersionDuplicate) as exc:
        raise FieldConflict(exc.fields) from exc
    except PolicyInvalid as exc:
        raise exceptions.ValidationError(exc.fields) from exc
    except PolicyVersionNotValidated as exc:
        raise PolicyVersionNotValidatedConflict(exc) from exc
    except PolicyPermissionDenied as exc:
        raise exceptions.PermissionDenied(str(exc)) from exc


def submitted_policy(request, *, default_filename: str = "policy.yaml") -> dict[str, Any]:
    """The policy a request carries, as the services take it: ``{"text"|"document", "filename"}``. JSON
    ``{"document": {...}}`` or ``{"text": "...", "filename"?}``, or a raw YAML body; 413 over 1 MB."""
    if len(request.body) > MAX_DOCUMENT_BYTES:
        too_large = PayloadTooLarge(detail=f"the policy request is at most {MAX_DOCUMENT_BYTES:,} bytes")
        too_large.fields = {"body": [f"at most {MAX_DOCUMENT_BYTES} bytes"]}
        raise too_large
    if not isinstance(request.data, dict):
        raise exceptions.ValidationError({"document": ["the body must be a JSON object with document or text"]})
    body = PolicyLintRequestSerializer(data=request.data)
    body.is_valid(raise_exception=True)
    if "document" in request.data:
        return {"document": request.data["document"], "filename": body.validated_data.get("filename", "policy.json")}
    filename = body.validated_data.get("filename", default_filename)
    return {"text": body.validated_data["text"], "filename": filename}


class PolicyVersionSerializer(serializers.ModelSerializer):
    policy = serializers.UUIDField(source="policy_id", read_only=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    activated_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    validation_errors = LintFindingSerializer(many=True, read_only=True)
    lint_counts = LintCountsSerializer(read_only=True)
    is_active = serializers.SerializerMethodField(help_text="The policy's active version.")

    class Meta:
        model = PolicyVersion
        fields = [
            "id",
            "policy",
            "version",
            "content_format",
            "content_sha256",
            "validated",
            "validation_errors",
            "lint_counts",
            "created_by",
            "created_at",
            "activated_at",
            "activated_by",
            "is_active",
            "shadow_replayed_at",
        ]
        read_only_fields = fields

    def get_is_active(self, obj: PolicyVersion) -> bool:
        policy = self.context.get("policy")
        if policy is not None and policy.pk == obj.policy_id:
            return policy.active_version_id == obj.pk
        return obj.is_active


class PolicyVersionDetailSerializer(PolicyVersionSerializer):
    document = serializers.JSONField(read_only=True, allow_null=True, help_text="Empty when the text did not parse.")
    shadow_report = serializers.JSONField(read_only=True, allow_null=True)

    class Meta(PolicyVersionSerializer.Meta):
        fields = [*PolicyVersionSerializer.Meta.fields, "content", "document", "shadow_report"]
        read_only_fields = fields


class PolicySerializer(serializers.ModelSerializer):
    team_slug = serializers.SlugRelatedField(source="team", slug_field="slug", read_only=True)
    active_version = serializers.SerializerMethodField()
    versions = serializers.IntegerField(source="version_count", read_only=True, help_text="How many versions.")
    latest_version = serializers.SerializerMethodField()
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Policy
        fields = [
            "id",
            "key",
            "name",
            "description",
            "team",
            "team_slug",
            "active_version",
            "versions",
            "latest_version",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def _version(self, policy: Policy, version: PolicyVersion | None) -> dict[str, Any] | None:
        if version is None:
            return None
        return PolicyVersionSerializer(version, context={**self.context, "policy": policy}).data

    @extend_schema_field(PolicyVersionSerializer(allow_null=True))
    def get_active_version(self, obj: Policy) -> dict[str, Any] | None:
        return self._version(obj, obj.active_version)

    @extend_schema_field(PolicyVersionSerializer(allow_null=True))
    def get_latest_version(self, obj: Policy) -> dict[str, Any] | None:
        latest = obj.latest_versions[0] if getattr(obj, "latest_versions", None) else None
        return self._version(obj, latest)


class PolicyReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=1000, help_text="Kept in the audit.")


class PolicyDiffRulesChangedSerializer(serializers.Serializer):
    id = serializers.CharField()
    keys = serializers.ListField(child=serializers.CharField(), help_text="Top-level rule keys that differ.")


class PolicyDiffRulesSerializer(serializers.Serializer):
    added = serializers.ListField(child=serializers.CharField())
    removed = serializers.ListField(child=serializers.CharField())
    changed = PolicyDiffRulesChangedSerializer(many=True)
    order_changed = serializers.BooleanField(help_text="The common rules are in another order (first match wins).")


class PolicyDiffFieldSerializer(serializers.Serializer):
    # "from" is a Python keyword: declared through the fields mapping below.
    to = serializers.JSONField(allow_null=True)
    changed = serializers.BooleanField()

    def get_fields(self):
        return {"from": serializers.JSONField(allow_null=True), **super().get_fields()}


class PolicyDiffSerializer(serializers.Serializer):
    policy = serializers.CharField(help_text="The policy key.")
    version = serializers.IntegerField()
    against = serializers.IntegerField()
    text = serializers.CharField(help_text="A unified diff of the stored contents.")
    rules = PolicyDiffRulesSerializer()
    scope = PolicyDiffFieldSerializer()
    default_action = PolicyDiffFieldSerializer()


class PolicyFilter(django_filters.FilterSet):
    key = django_filters.CharFilter()
    team = django_filters.CharFilter(method="filter_team", help_text="A team id or slug.")
    active = django_filters.BooleanFilter(method="filter_active", help_text="Has an active version.")
    search = django_filters.CharFilter(method="filter_search", help_text="In key, name and description.")

    class Meta:
        model = Policy
        fields = ["key", "team", "active", "search"]

    def filter_team(self, queryset, name, value):
        return queryset.filter(team__pk=as_uuid(value)) if is_uuid(value) else queryset.filter(team__slug=value)

    def filter_active(self, queryset, name, value):
        return queryset.filter(active_version__isnull=not value)

    def filter_search(self, queryset, name, value):
        return queryset.filter(Q(key__icontains=value) | Q(name__icontains=value) | Q(description__icontains=value))


_WRITE_ERRORS = {
    400: OpenApiResponse(ErrorEnvelopeSerializer, description="Invalid input; the field is named."),
    403: OpenApiResponse(ErrorEnvelopeSerializer, description="Admins and governance leads of the owner team."),
}
_NOT_FOUND = {404: OpenApiResponse(ErrorEnvelopeSerializer, description="No such policy or version.")}
_TOO_LARGE = {413: OpenApiResponse(ErrorEnvelopeSerializer, description=f"Over {MAX_DOCUMENT_BYTES:,} bytes.")}


class PolicyLookupMixin:
    """``{id}`` / ``{policy_ref}`` in the URL is the policy's id or its key; unknown: 404 naming it."""

    def policy_or_404(self, ref: str) -> Policy:
        policy = policy_get_by_ref(ref=ref)
        if policy is None:
            raise exceptions.NotFound(f"No policy {ref!r}.")
        return policy


@extend_schema_view(
    list=extend_schema(summary="Policies (policy-as-code), by key"),
    retrieve=extend_schema(
        summary="One policy; {id} is its id or its key", responses={200: PolicySerializer, **_NOT_FOUND}
    ),
)
class PolicyViewSet(PolicyLookupMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Every person and the CI/CD service accounts read; admins and governance leads write (a team's policy:
    its governance leads). Writes go through ``governance.services.policies`` (linted, audited)."""

    serializer_class = PolicySerializer
    filterset_class = PolicyFilter
    ordering_fields = ["key", "created_at", "updated_at"]
    ordering = ["key"]
    lookup_value_regex = "[^/]+"
    read_roles = POLICY_READERS
    write_roles = POLICY_WRITERS
    parser_classes = [VigilJSONParser, YAMLTextParser, TextYAMLParser, XYAMLParser]

    def get_queryset(self):
        return policy_list()

    def get_object(self):
        return self.policy_or_404(self.kwargs[self.lookup_field])

    @extend_schema(
        summary="Create a policy from its first document (stored as version 1, not active)",
        request=_POLICY_SUBMISSION,
        responses={
            201: PolicySerializer,
            **_WRITE_ERRORS,
            409: OpenApiResponse(ErrorEnvelopeSerializer, description="A policy with this metadata.id exists."),
            **_TOO_LARGE,
        },
    )
    def create(self, request):
        """The document's ``metadata`` names the policy (``id``: its key), ``owner_team`` its team. A document
        with lint errors is created too (version 1 not validated: it cannot be activated)."""
        with policy_service_errors():
            version = policy_create(actor=request.user, **submitted_policy(request))
        return Response(self.get_serializer(self.policy_or_404(str(version.policy_id))).data, status=201)

    @extend_schema(
        summary="Deactivate a policy (no version in force)",
        request=PolicyReasonSerializer,
        responses={200: PolicySerializer, **_WRITE_ERRORS, **_NOT_FOUND},
    )
    @action(detail=True, methods=["post"])
    def deactivate(self, request, pk=None):
        """Idempotent: an inactive policy stays as it is (nothing audited)."""
        policy = self.get_object()
        body = PolicyReasonSerializer(data=request.data if isinstance(request.data, dict) else {})
        body.is_valid(raise_exception=True)
        with policy_service_errors():
            policy_deactivate(policy=policy, actor=request.user, reason=body.validated_data.get("reason", ""))
        return Response(self.get_serializer(self.get_object()).data)


class PolicyVersionFilter(django_filters.FilterSet):
    validated = django_filters.BooleanFilter()

    class Meta:
        model = PolicyVersion
        fields = ["validated"]


@extend_schema_view(
    list=extend_schema(summary="Versions of a policy, newest first"),
    retrieve=extend_schema(
        summary="One version of a policy with its content and parsed document",
        responses={200: PolicyVersionDetailSerializer, **_NOT_FOUND},
    ),
)
class PolicyVersionViewSet(
    PolicyLookupMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """``/policies/{policy}/versions[/{version}]``: immutable versions, addressed by number."""

    serializer_class = PolicyVersionSerializer
    filterset_class = PolicyVersionFilter
    ordering_fields = ["version"]
    ordering = ["-version"]
    lookup_field = "version"
    lookup_value_regex = "[0-9]+"
    read_roles = POLICY_READERS
    write_roles = POLICY_WRITERS
    parser_classes = [VigilJSONParser, YAMLTextParser, TextYAMLParser, XYAMLParser]

    @cached_property
    def policy(self) -> Policy:
        return self.policy_or_404(self.kwargs["policy_ref"])

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return PolicyVersion.objects.none()
        versions = PolicyVersion.objects.filter(policy=self.policy).select_related("created_by", "activated_by")
        return versions.defer("content", "document", "shadow_report") if self.action == "list" else versions

    def get_serializer_context(self):
        context = super().get_serializer_context()
        if not getattr(self, "swagger_fake_view", False):
            context["policy"] = self.policy
        return context

    def get_serializer_class(self):
        return PolicyVersionDetailSerializer if self.action == "retrieve" else PolicyVersionSerializer

    def get_object(self):
        return self.version_or_404(self.kwargs["version"])

    def version_or_404(self, number: Any) -> PolicyVersion:
        found = self.get_queryset().filter(version=int(number)).first() if str(number).isdigit() else None
        if found is None:
            raise exceptions.NotFound(f"No version {number} of policy {self.policy.key!r}.")
        found.policy = self.policy
        return found

    @extend_schema(
        summary="Add a version (linted and stored whatever the verdict; not activated)",
        request=_POLICY_SUBMISSION,
        responses={
            201: PolicyVersionSerializer,
            **_WRITE_ERRORS,
            **_NOT_FOUND,
            409: OpenApiResponse(ErrorEnvelopeSerializer, description="Identical to the latest version."),
            **_TOO_LARGE,
        },
    )
    def create(self, request, policy_ref=None):
        """``metadata.id`` must be the policy's key. A version with lint errors is stored with
        ``validated`` false and its findings; it cannot be activated."""
        policy = self.policy
        with policy_service_errors():
            version = policy_version_create(policy=policy, actor=request.user, **submitted_policy(request))
        version.policy = policy
        return Response(self.get_serializer(version).data, status=201)

    @extend_schema(
        summary="Activate a validated version (an older one: a rollback)",
        request=PolicyReasonSerializer,
        responses={
            200: PolicySerializer,
            **_WRITE_ERRORS,
            **_NOT_FOUND,
            409: OpenApiResponse(
                ErrorEnvelopeSerializer, description="policy_version_not_validated: the version has lint errors."
            ),
        },
    )
    @action(detail=True, methods=["post"])
    def activate(self, request, policy_ref=None, version=None):
        """Idempotent for the active version. Audited with the previous version and the reason."""
        target = self.get_object()
        body = PolicyReasonSerializer(data=request.data if isinstance(request.data, dict) else {})
        body.is_valid(raise_exception=True)
        with policy_service_errors():
            policy_version_activate(version=target, actor=request.user, reason=body.validated_data.get("reason", ""))
        policy = self.policy_or_404(str(target.policy_id))
        return Response(PolicySerializer(policy, context=self.get_serializer_context()).data)

    @extend_schema(
        summary="What changed between two versions: a unified text diff and the rules by id",
        parameters=[
            OpenApiParameter(
                "against",
                int,
                OpenApiParameter.QUERY,
                required=False,
                description="The version to compare with (default: the previous one).",
            ),
        ],  # fmt: skip
        responses={
            200: PolicyDiffSerializer,
            400: OpenApiResponse(ErrorEnvelopeSerializer, description="No such version to compare with."),
            **_NOT_FOUND,
        },
    )
    @action(detail=True, methods=["get"])
    def diff(self, request, policy_ref=None, version=None):
        target = self.get_object()
        against_ref = request.query_params.get("against")
        if against_ref is None:
            against = self.get_queryset().filter(version__lt=target.version).order_by("-version").first()
            if against is None:
                raise exceptions.ValidationError({"against": [f"version {target.version} has no previous version"]})
        else:
            against = self.get_queryset().filter(version=int(against_ref)).first() if against_ref.isdigit() else None
            if against is None:
                raise exceptions.ValidationError({"against": [f"no version {against_ref!r} of this policy"]})
        against.policy = self.policy
        return Response(policy_version_diff(version=target, against=against))

    @extend_schema(
        summary="Shadow replay: what this version would have decided over the last days, against the active one",
        request=ShadowReplayRequestSerializer,
        responses={
            200: OpenApiResponse(
                description="The replay report (also stored on the version as shadow_report): decisions evaluated "
                "and changed, transitions, systems changed, rules fired, missing facts, today's decisions, and up "
                "to 200 changed decisions."
            ),
            **_WRITE_ERRORS,
            **_NOT_FOUND,
            409: OpenApiResponse(ErrorEnvelopeSerializer, description="The version is not validated."),
        },
    )
    @action(detail=True, methods=["post"], url_path="shadow-replay")
    def shadow_replay(self, request, policy_ref=None, version=None):
        """Evaluates every active AI system in either version's scope at the end of each of the last ``days``
        days (default 30, at most 90) and now; audited ``policy.shadow_replayed``. Changes nothing else."""
        target = self.get_object()
        body = ShadowReplayRequestSerializer(data=request.data if isinstance(request.data, dict) else {})
        body.is_valid(raise_exception=True)
        if not policy_may_write(actor=request.user, team=self.policy.team):
            raise exceptions.PermissionDenied("only admins and this policy's team's governance leads may replay it")
        if not target.validated:
            raise PolicyVersionNotValidatedConflict(PolicyVersionNotValidated(target))
        try:
            report = policy_shadow_replay(version=target, actor=request.user, days=body.validated_data["days"])
        except PolicyNotReplayable as exc:
            raise exceptions.ValidationError(exc.fields) from exc
        return Response(report)
