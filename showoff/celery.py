"""Celery application: Redis is the broker (DESIGN.md §5)."""

from __future__ import annotations

import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "showoff.settings.base")

app = Celery("showoff")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


# --- task outcomes for Prometheus (showoff/metrics.py), counted per task name ---------------
# showoff.metrics is imported on first use, not here: this module loads with Django's settings,
# and prometheus_client must see PROMETHEUS_MULTIPROC_DIR (possibly from .env) when it loads.


def _task_name(sender) -> str:
    return getattr(sender, "name", None) or str(sender)


@signals.task_prerun.connect
def _task_prerun(sender=None, task_id=None, **_):
    from showoff import metrics

    metrics.celery_task_prerun(task_id)


@signals.task_postrun.connect
def _task_postrun(sender=None, task_id=None, **_):
    from showoff import metrics

    metrics.celery_task_postrun(_task_name(sender), task_id)


@signals.task_success.connect
def _task_success(sender=None, **_):
    from showoff import metrics

    metrics.celery_task_outcome(_task_name(sender), "success")


@signals.task_failure.connect
def _task_failure(sender=None, **_):
    from showoff import metrics

    metrics.celery_task_outcome(_task_name(sender), "failure")


@signals.task_retry.connect
def _task_retry(sender=None, **_):
    from showoff import metrics

    metrics.celery_task_outcome(_task_name(sender), "retry")


@signals.task_revoked.connect
def _task_revoked(sender=None, **_):
    from showoff import metrics

    metrics.celery_task_outcome(_task_name(sender), "revoked")


@signals.worker_init.connect
def _serve_worker_metrics(**_):
    from django.conf import settings

    if settings.CELERY_METRICS_PORT:
        from showoff import metrics

        metrics.serve_multiprocess(settings.CELERY_METRICS_PORT, settings.METRICS_ADDRESS)
