"""Policy-as-code endpoints: ``POST /policies/lint`` (lint a policy document) and ``GET /policies/schema``
(the published JSON Schema of the format). Any authenticated caller may use both; they read nothing and
write nothing but the rate-limit counter.

The lint answers 200 with the report even when the policy has errors (the lint itself succeeded); 400 only
when the request is malformed (the field is named), 413 when the body is over 1 MB.
"""

from __future__ import annotations

from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from governance.api.errors import PayloadTooLarge
from governance.api.parsers import VigilJSONParser
from governance.services.policy_lint import MAX_DOCUMENT_BYTES, policy_lint, policy_schema
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
        request={
            "application/json": PolicyLintRequestSerializer,
            "application/yaml": OpenApiTypes.STR,
            "text/yaml": OpenApiTypes.STR,
        },
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
