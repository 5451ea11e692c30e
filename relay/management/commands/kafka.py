"""`manage.py kafka <subcommand>`: the operator CLI, mirroring Kafka's own tools."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from relay.kafka import KafkaDisabled, ensure_enabled
from relay.topics import TopicLayoutError, create_topics


class Command(BaseCommand):
    help = "Kafka operator commands (topics, consumer groups, tail, create-topics)."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")
        sub.add_parser(
            "create-topics",
            help="Create the eight topics, their .dlq twins and the relay checkpoint topic.",
        )

    def handle(self, *args, **opts):
        try:
            ensure_enabled(f"kafka {opts['subcommand']}")
        except KafkaDisabled as exc:
            raise CommandError(str(exc)) from None
        return getattr(self, "do_" + opts["subcommand"].replace("-", "_"))(opts)

    def do_create_topics(self, opts) -> None:
        try:
            report = create_topics()
        except TopicLayoutError as exc:
            raise CommandError(str(exc)) from None
        width = max(len(name) for name, _ in report)
        for name, what in report:
            self.stdout.write(f"{name:<{width}}  {what}")
