"""The fan-out worker (`manage.py run_fanout`): writes pending fan-out jobs into feeds, one
chunk per transaction (feeds.services.fanout_chunk).

Several workers can run side by side: each claims jobs with SKIP LOCKED, so they share the
work and never write the same chunk. Idle, a worker waits for a `feeds_fanout` notification
(sent when a consumer batch that created a job commits), with a polling fallback.
"""

from __future__ import annotations

import logging
import signal
import time

from django.conf import settings
from django.db import OperationalError, close_old_connections, connection, transaction

from . import services

log = logging.getLogger("feeds.fanout")


class FanoutWorker:
    def __init__(self, *, max_idle: float | None = None):
        self.shutdown = False
        self.poll = settings.FEEDS_FANOUT_POLL_SECONDS if max_idle is None else max_idle
        self.chunks = 0
        self.rows = 0
        self._listening = False

    def step(self) -> bool:
        """Write one chunk of the next job; returns whether there was one."""
        with transaction.atomic():
            done = services.fanout_chunk()
        if done is None:
            return False
        self.chunks += 1
        self.rows += done[1]
        return True

    def wait(self) -> None:
        """Until a notification or the poll interval (whichever comes first)."""
        try:
            if not self._listening:
                connection.ensure_connection()
                with connection.cursor() as cur:
                    cur.execute("LISTEN feeds_fanout")
                self._listening = True
            for _ in connection.connection.notifies(timeout=self.poll, stop_after=1):
                pass
        except (OperationalError, OSError, ValueError):
            # The connection broke: drop it; the next step reconnects (and LISTENs again).
            self._listening = False
            connection.close()
            time.sleep(self.poll)

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        log.info("fan-out worker: started (chunk %d followers)", settings.FEEDS_FANOUT_CHUNK)
        while not self.shutdown:
            try:
                if not self.step():
                    self.wait()
            except OperationalError as exc:
                log.warning("fan-out worker: database unavailable (%s); retrying", exc)
                self._listening = False
                close_old_connections()
                connection.close()
                time.sleep(min(5.0, max(self.poll, 0.5)))
        log.info("fan-out worker: stopped after %d chunks, %d rows", self.chunks, self.rows)

    def _stop(self, *_args) -> None:
        self.shutdown = True
