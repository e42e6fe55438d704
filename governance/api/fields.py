"""Serializer fields shared by every app's API."""

from __future__ import annotations

from rest_framework import serializers

from governance.api.errors import TooManyIds


class IdListField(serializers.ListField):
    """A list of UUIDs for bulk endpoints. Longer than ``max_length`` answers 413 before any id is looked
    at (a 100,000-id body gets one clear answer, not 100,000 messages); a malformed id is named
    ``<field>.<index>``."""

    def __init__(self, **kwargs):
        kwargs.setdefault("child", serializers.UUIDField())
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if isinstance(data, list) and self.max_length is not None and len(data) > self.max_length:
            raise TooManyIds(self.field_name, len(data), self.max_length)
        return super().to_internal_value(data)
