from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from relay.retention import outbox_prune


class Command(BaseCommand):
    help = "Delete delivered outbox rows older than OUTBOX_RETENTION_HOURS (never undelivered)."

    def add_arguments(self, parser):
        parser.add_argument("--older-than-hours", type=float,
                            default=settings.OUTBOX_RETENTION_HOURS)
        parser.add_argument("--shards", type=int, default=settings.RELAY_SHARDS,
                            help="The relay shard layout whose positions decide delivery.")

    def handle(self, *args, **opts):
        if opts["older_than_hours"] < 0:
            raise CommandError("--older-than-hours must be 0 or more.")
        n = outbox_prune(older_than=timedelta(hours=opts["older_than_hours"]),
                         shards=opts["shards"])
        self.stdout.write(f"deleted {n} delivered outbox row(s)")
