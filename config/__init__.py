"""Vigil's Django project package and the runtime-config app (platform_config tables)."""

from config.celery import app as celery_app

__all__ = ["celery_app"]
