"""Cursor pagination for every list: stable under inserts, ``page_size`` capped at 500."""

from django.conf import settings
from rest_framework.pagination import CursorPagination


class VigilCursorPagination(CursorPagination):
    page_size_query_param = "page_size"
    max_page_size = settings.API_MAX_PAGE_SIZE
    ordering = "-created_at"
