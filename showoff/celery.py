"""Celery application: Redis is the broker (DESIGN.md §5)."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "showoff.settings.base")

app = Celery("showoff")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
