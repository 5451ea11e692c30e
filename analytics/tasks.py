"""Celery beat tasks of analytics: both are safe to run twice (and concurrently)."""

from __future__ import annotations

from dataclasses import asdict

from celery import shared_task

from . import services


@shared_task(name="analytics.rollup")
def rollup() -> list[str]:
    """Recompute the daily metrics and percentiles of the days that can still change."""
    return services.rollup_run().days


@shared_task(name="analytics.prune")
def prune() -> dict[str, int]:
    """Delete raw rows past their retention."""
    return asdict(services.analytics_prune())
