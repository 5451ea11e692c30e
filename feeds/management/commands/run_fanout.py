"""`manage.py run_fanout`: the fan-out worker (feeds/fanout.py). Run one or more."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from feeds.fanout import FanoutWorker


class Command(BaseCommand):
    help = "Write pending fan-out jobs into followers' home feeds, one chunk per transaction."

    def handle(self, *args, **opts):
        FanoutWorker().run()
