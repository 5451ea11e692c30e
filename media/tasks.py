"""Celery tasks of the media app: ids in, services do the work, safe to run twice."""

from __future__ import annotations

import os

from celery import shared_task

from . import services


@shared_task(bind=True, name="media.transcode_video", ignore_result=True)
def transcode_video(self, job_id: int) -> str:
    worker = f"{self.request.hostname or 'local'} pid {os.getpid()}"
    return services.transcode_job_run(job_id=job_id, worker=worker)


@shared_task(name="media.sweep_transcode_jobs", ignore_result=True)
def sweep_transcode_jobs() -> dict[str, int]:
    return services.transcode_jobs_sweep()
