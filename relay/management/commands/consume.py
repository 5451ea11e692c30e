"""`manage.py consume <topic> [<topic> ...]`: apply each event's effects exactly once.

Runs, in one process, every consumer name with handlers for the topics (one Kafka consumer
group each, `{KAFKA_CONSUMER_GROUP}.<name>`); `--consumer` keeps one. See relay/consumer.py.
"""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import CommandError

from relay import metrics
from relay.cli import OperatorCommand, number_argument
from relay.consumer import (
    ConsumerRunner,
    ConsumerSetupError,
    ConsumerWorker,
    check_topics_exist,
    plan,
)
from relay.kafka import ensure_enabled

_positive_int = number_argument(int, minimum=1)
_positive_float = number_argument(float, minimum=0, above=True)
_non_negative_float = number_argument(float, minimum=0)


class Command(OperatorCommand):
    help = "Consume topics and run their registered handlers, each event's effects exactly once."

    def add_arguments(self, parser):
        parser.add_argument("topics", nargs="+", metavar="topic",
                            help="Logical topic names (post-events, user-events, ...).")
        parser.add_argument("--consumer", help="Run only this consumer name (handler owner).")
        parser.add_argument("--group", help="Consumer group id (default "
                            "{KAFKA_CONSUMER_GROUP}.<consumer>); needs a single consumer.")
        parser.add_argument("--from-beginning", action="store_true",
                            help="A group without committed offsets starts at the earliest "
                                 "record (whatever CONSUMER_AUTO_OFFSET_RESET says).")
        parser.add_argument("--max-records", type=_positive_int,
                            help="Each consumer exits after handling N records (tests).")
        parser.add_argument("--batch-size", type=_positive_int,
                            help="Records per batch, one DB transaction each (default "
                                 "CONSUMER_BATCH_SIZE).")
        parser.add_argument("--batch-ms", type=_non_negative_float,
                            help="Milliseconds a batch waits for more records after its first "
                                 "(default CONSUMER_BATCH_MS).")
        parser.add_argument("--poll-timeout", type=_positive_float,
                            help="Seconds one poll waits (default CONSUMER_POLL_TIMEOUT).")
        parser.add_argument("--instance-id",
                            help="Static group membership (group.instance.id): a restarted "
                                 "consumer takes its partitions back without a rebalance; on "
                                 "shutdown it does not leave the group.")
        parser.add_argument("--metrics-port", type=metrics.port_number,
                            help="Serve this process's Prometheus metrics on "
                                 "http://ADDR:PORT/metrics.")
        parser.add_argument("--metrics-addr",
                            help="Address for --metrics-port (default METRICS_ADDRESS, "
                                 "127.0.0.1; 0.0.0.0 in a container).")

    def handle(self, *args, **opts):
        ensure_enabled("consume")
        try:
            names = plan(opts["topics"], consumer=opts["consumer"])
            if opts["group"] and len(names) > 1:
                raise ConsumerSetupError(
                    f"--group names one group, but {len(names)} consumers handle these topics "
                    f"({', '.join(sorted(names))}); add --consumer NAME."
                )
            check_topics_exist({t for topics in names.values() for t in topics})
        except ConsumerSetupError as exc:
            raise CommandError(str(exc)) from None
        workers = [
            ConsumerWorker(
                name, topics,
                group_id=opts["group"],
                from_beginning=opts["from_beginning"],
                max_records=opts["max_records"],
                batch_size=opts["batch_size"],
                batch_ms=opts["batch_ms"],
                poll_timeout=opts["poll_timeout"],
                instance_id=opts["instance_id"],
            )
            for name, topics in sorted(names.items())
        ]
        if opts["metrics_port"] is not None:
            try:
                metrics.serve(opts["metrics_port"],
                              opts["metrics_addr"] or settings.METRICS_ADDRESS)
            except OSError as exc:
                raise CommandError(str(exc)) from None
        runner = ConsumerRunner(workers)
        try:
            with runner.signals_stop():
                runner.run()
        finally:
            metrics.mark_process_dead()
        if runner.errors:
            name, exc = runner.errors[0]
            raise CommandError(f"consumer {name} stopped: {exc.__class__.__name__}: {exc}")
