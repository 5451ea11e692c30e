"""Celery tasks of the coins app (periodic maintenance)."""

from __future__ import annotations

import datetime as dt

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from .models import IdempotencyKey


@shared_task
def idempotency_keys_prune() -> int:
    """Delete stored Idempotency-Key results older than COINS_IDEMPOTENCY_KEY_TTL_HOURS."""
    cutoff = timezone.now() - dt.timedelta(hours=settings.COINS_IDEMPOTENCY_KEY_TTL_HOURS)
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=cutoff).delete()
    return deleted
