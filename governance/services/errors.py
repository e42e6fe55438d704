"""The one exception shape services raise for bad input: every problem named by its field."""

from __future__ import annotations


class InvalidFields(ValueError):
    """Bad input; ``fields`` maps each field path (``ids.3``, ``filter.severity``, ``rca.impact``) to its
    messages. API views answer 400 with them (413 when ``too_many``: more items than one request may
    carry). Raised before anything is written."""

    def __init__(self, fields: dict[str, list[str]], *, too_many: bool = False):
        self.fields = fields
        self.too_many = too_many
        super().__init__("; ".join(f"{name}: {messages[0]}" for name, messages in fields.items()))
