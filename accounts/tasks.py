"""Celery tasks of the accounts app: services do the work, safe to run twice."""

from __future__ import annotations

from celery import shared_task

from . import services


@shared_task(name="accounts.prune_tokens", ignore_result=True)
def prune_tokens() -> int:
    return services.account_tokens_prune()
