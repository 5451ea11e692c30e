"""Celery beat task of feeds (safe to run twice, and concurrently: the refresh replaces the
ranking in one transaction)."""

from __future__ import annotations

from celery import shared_task
from django.db import transaction

from . import services


@shared_task(name="feeds.refresh_trending")
def refresh_trending() -> int:
    with transaction.atomic():
        return services.trending_refresh()
