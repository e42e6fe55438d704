"""Abstract bases shared by every Vigil table."""

import uuid

from django.db import models


class VigilModel(models.Model):
    """UUID primary key plus created/updated timestamps (DESIGN §4)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True
