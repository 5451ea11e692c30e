"""`manage.py run_relay`: stream the outbox to Kafka exactly once, in commit order."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from relay import metrics
from relay.engine import Relay, RelayError, Shard
from relay.kafka import KafkaDisabled


class Command(BaseCommand):
    help = (
        "Deliver outbox events to Kafka exactly once, in commit order. One active relay per "
        "shard (a second one waits as a hot standby)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--shards", type=int, default=1,
                            help="Number of shards the outbox is split into (by key hash).")
        parser.add_argument("--shard", type=int, default=0, help="This relay's shard (0-based).")
        parser.add_argument("--batch-size", type=int, default=None,
                            help="Events per Kafka transaction (default RELAY_BATCH_SIZE).")
        parser.add_argument("--poll-interval", type=float, default=None,
                            help="Seconds between polls when no NOTIFY arrives.")
        parser.add_argument("--once", action="store_true",
                            help="Deliver the backlog, then exit (tests, cron).")
        parser.add_argument("--trust-db-position", action="store_true",
                            help="Resume from the database's copy of the position when the "
                                 "Kafka checkpoint is missing.")
        parser.add_argument("--reanchor", action="store_true",
                            help="After a database restore or a move to another cluster: "
                                 "deliver every row left in the outbox (restored ones "
                                 "included), then go on with new ones.")
        parser.add_argument("--change-layout", action="store_true",
                            help="Hand the outbox over from the current shard layout to "
                                 "--shards (stop every relay first), then exit.")
        parser.add_argument("--metrics-port", type=metrics.port_number, default=None,
                            help="Serve this process's Prometheus metrics on "
                                 "http://ADDR:PORT/metrics.")
        parser.add_argument("--metrics-addr", default=None,
                            help="Address for --metrics-port (default METRICS_ADDRESS, "
                                 "127.0.0.1; 0.0.0.0 in a container).")
        # Bypasses the advisory lock: only for the fencing test and emergencies.
        parser.add_argument("--unsafe-no-lock", action="store_true", help="(testing only)")

    def handle(self, *args, **opts):
        if opts["verbosity"] >= 2:
            logging.getLogger("relay").setLevel(logging.DEBUG)
        elif logging.getLogger("relay").getEffectiveLevel() > logging.INFO:
            logging.getLogger("relay").setLevel(logging.INFO)
        try:
            if opts["change_layout"]:
                from relay.layout import change_layout

                for line in change_layout(opts["shards"], batch_size=opts["batch_size"]):
                    self.stdout.write(line)
                return
            relay = Relay(
                shard=Shard(shards=opts["shards"], shard=opts["shard"]),
                batch_size=opts["batch_size"],
                poll_interval=opts["poll_interval"],
                use_lock=not opts["unsafe_no_lock"],
                trust_db_position=opts["trust_db_position"],
                reanchor=opts["reanchor"],
            )
            if opts["metrics_port"] is not None:
                try:
                    metrics.serve(opts["metrics_port"],
                                  opts["metrics_addr"] or settings.METRICS_ADDRESS)
                except OSError as exc:
                    raise CommandError(str(exc)) from None
            relay.install_signal_handlers()
            relay.run(once=opts["once"])
        except (KafkaDisabled, RelayError) as exc:
            raise CommandError(str(exc)) from None
        finally:
            metrics.mark_process_dead()
