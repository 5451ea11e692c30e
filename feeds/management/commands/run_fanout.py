"""`manage.py run_fanout`: the fan-out worker (feeds/fanout.py). Run one or more."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from feeds.fanout import FanoutWorker
from relay import metrics


class Command(BaseCommand):
    help = "Write pending fan-out jobs into followers' home feeds, one chunk per transaction."

    def add_arguments(self, parser):
        parser.add_argument("--metrics-port", type=metrics.port_number, default=None,
                            help="Serve this process's Prometheus metrics on "
                                 "http://ADDR:PORT/metrics (Prometheus' `up` says it runs).")
        parser.add_argument("--metrics-addr", default=None,
                            help="Address for --metrics-port (default METRICS_ADDRESS).")

    def handle(self, *args, **opts):
        if opts["metrics_port"] is not None:
            try:
                metrics.serve(opts["metrics_port"],
                              opts["metrics_addr"] or settings.METRICS_ADDRESS)
            except OSError as exc:
                raise CommandError(str(exc)) from None
        FanoutWorker().run()
