from rest_framework import serializers

from config.diff import json_diff
from config.keys import load_schema
from config.models import ConfigCategory, PlatformConfigHistory


class ConfigEntrySerializer(serializers.Serializer):
    key = serializers.CharField()
    value = serializers.JSONField()
    category = serializers.ChoiceField(choices=ConfigCategory.choices)
    version = serializers.IntegerField(help_text="0 when the key is served from its declared default.")
    description = serializers.CharField()
    updated_at = serializers.DateTimeField(allow_null=True)
    stored = serializers.BooleanField()


class ConfigDetailSerializer(ConfigEntrySerializer):
    schema = serializers.SerializerMethodField()

    def get_schema(self, entry) -> dict:
        return load_schema(entry.key)


class ConfigUpdateSerializer(serializers.Serializer):
    value = serializers.JSONField(help_text="The new value; validated against the key's JSON Schema.")
    version = serializers.IntegerField(
        required=False,
        min_value=0,
        help_text="The version you edited (optimistic concurrency): a different stored version answers 409.",
    )
    reason = serializers.CharField(required=False, allow_blank=True, max_length=1000, default="")


class ConfigHistorySerializer(serializers.ModelSerializer):
    key = serializers.CharField(source="config.key", read_only=True)
    changed_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    changes = serializers.SerializerMethodField()

    class Meta:
        model = PlatformConfigHistory
        fields = ["key", "version", "previous_value", "new_value", "changes", "changed_by", "changed_at", "reason"]
        read_only_fields = fields

    def get_changes(self, obj) -> list[dict]:
        return json_diff(obj.previous_value, obj.new_value) if obj.previous_value is not None else []
