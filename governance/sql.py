"""Portable SQL expressions the ORM lacks (one definition, a form per database)."""

from __future__ import annotations

from datetime import datetime

from django.db.models import DateTimeField, FloatField, Func, Value


class HoursFrom(Func):
    """Hours from ``origin`` to the datetime ``expression`` as a float (negative before ``origin``).

    PostgreSQL: ``EXTRACT(EPOCH FROM (expression - origin)) / 3600``; SQLite: the difference of the two
    Julian days × 24. Regression sums over it (Σx, Σxy, Σx²) give least-squares slopes per hour with the
    same numbers on both databases.
    """

    output_field = FloatField()

    def __init__(self, expression, origin: datetime):
        super().__init__(expression, Value(origin, output_field=DateTimeField()))

    def as_sql(self, compiler, connection, **extra_context):
        return super().as_sql(
            compiler, connection, template="((julianday(%(expressions)s)) * 24.0)", arg_joiner=") - julianday(",
            **extra_context,
        )  # fmt: skip

    def as_postgresql(self, compiler, connection, **extra_context):
        return super().as_sql(
            compiler, connection, template="(EXTRACT(EPOCH FROM (%(expressions)s)) / 3600.0)::float8",
            arg_joiner=" - ", **extra_context,
        )  # fmt: skip
