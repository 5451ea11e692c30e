"""`manage.py kafka <subcommand>`: the operator CLI, mirroring Kafka's own tools.

    kafka topics --list [--all]
    kafka topics --describe [--topic T] [--all]
    kafka topics --alter --topic T --partitions N
    kafka tail T [--from-beginning] [--max N] [--timeout-ms MS]
    kafka groups --list
    kafka groups --describe --group G
    kafka groups --reset-offsets --group G --topic T (--to-earliest | --to-latest |
                 --to-datetime ISO) [--execute]
    kafka create-topics

Topics are named logically (`post-events`; KAFKA_TOPIC_PREFIX is applied) or physically.
"""

from __future__ import annotations

from django.core.management.base import CommandError

from relay import cli
from relay.kafka import ensure_enabled
from relay.topics import TopicLayoutError, create_topics

_positive = cli.number_argument(int, minimum=1)


class Command(cli.OperatorCommand):
    help = "Kafka operator commands (topics, consumer groups, tail, create-topics)."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND",
                                    parser_class=cli.OneLineParser)

        topics = sub.add_parser("topics", help="List, describe or grow topics.")
        action = topics.add_mutually_exclusive_group(required=True)
        action.add_argument("--list", action="store_true", help="Topic names.")
        action.add_argument("--describe", action="store_true",
                            help="Partitions, leaders, replicas, ISR and topic configs.")
        action.add_argument("--alter", action="store_true",
                            help="Add partitions to --topic (needs --partitions).")
        topics.add_argument("--topic", help="Logical (post-events) or physical topic name.")
        topics.add_argument("--partitions", type=_positive,
                            help="The new partition count (--alter).")
        topics.add_argument("--all", action="store_true",
                            help="Include topics outside KAFKA_TOPIC_PREFIX and internal ones.")

        tail = sub.add_parser("tail", help="Print a topic's records as CloudEvents.")
        tail.add_argument("topic")
        tail.add_argument("--from-beginning", action="store_true",
                          help="Start at the earliest record (default: only new records).")
        tail.add_argument("--max", type=_positive, dest="max_records",
                          help="Exit after printing N records.")
        tail.add_argument("--timeout-ms", type=_positive,
                          help="Exit after this many milliseconds without a record.")

        groups = sub.add_parser("groups", help="List, describe or reset consumer groups.")
        action = groups.add_mutually_exclusive_group(required=True)
        action.add_argument("--list", action="store_true", help="Consumer groups and states.")
        action.add_argument("--describe", action="store_true",
                            help="Per partition: committed offset, end offset, lag, owner.")
        action.add_argument("--reset-offsets", action="store_true",
                            help="Move the group's offsets on --topic (dry run without "
                                 "--execute).")
        groups.add_argument("--group")
        groups.add_argument("--topic")
        to = groups.add_mutually_exclusive_group()
        to.add_argument("--to-earliest", action="store_true")
        to.add_argument("--to-latest", action="store_true")
        to.add_argument("--to-datetime", metavar="ISO",
                        help="First offset at or after this time (UTC unless it has an offset).")
        groups.add_argument("--execute", action="store_true",
                            help="Apply the reset (without it, only show the plan).")

        sub.add_parser(
            "create-topics",
            help="Create the eight topics, their .dlq twins and the relay checkpoint topic.",
        )

    def handle(self, *args, **opts):
        ensure_enabled(f"kafka {opts['subcommand']}")
        return getattr(self, "do_" + opts["subcommand"].replace("-", "_"))(opts)

    def out(self, text: str) -> None:
        if text:
            self.stdout.write(text)

    # --- topics ---------------------------------------------------------------------------

    def do_topics(self, opts) -> None:
        if opts["list"]:
            for name in cli.topics_list(show_all=opts["all"]):
                self.out(name)
        elif opts["describe"]:
            described = cli.topics_describe(opts["topic"], show_all=opts["all"])
            for i, t in enumerate(described):
                if i:
                    self.out("")
                configs = ",".join(f"{k}={v}" for k, v in t.configs.items()) or "-"
                self.out(f"Topic: {t.name}  PartitionCount: {len(t.partitions)}  "
                         f"ReplicationFactor: {t.replication_factor}  Configs: {configs}")
                self.out(cli.format_table(
                    ["PARTITION", "LEADER", "REPLICAS", "ISR"],
                    [(p, leader, ",".join(map(str, reps)), ",".join(map(str, isr)))
                     for p, leader, reps, isr in t.partitions]))
        else:
            if not opts["topic"] or not opts["partitions"]:
                raise CommandError("topics --alter needs --topic T and --partitions N.")
            name, before, after = cli.topics_alter(opts["topic"], opts["partitions"])
            self.out(f"Topic {name}: {before} -> {after} partitions. Keys now map to other "
                     "partitions: per-key order holds only among records written after this.")

    # --- tail -----------------------------------------------------------------------------

    def do_tail(self, opts) -> None:
        stop = cli.StopFlag()
        with stop.installed():
            cli.tail(opts["topic"], self.stdout, from_beginning=opts["from_beginning"],
                     max_records=opts["max_records"], timeout_ms=opts["timeout_ms"],
                     should_stop=stop)

    # --- groups ---------------------------------------------------------------------------

    def do_groups(self, opts) -> None:
        if opts["list"]:
            self.out(cli.format_table(["GROUP", "STATE"], cli.groups_list()))
            return
        if not opts["group"]:
            raise CommandError("groups --describe and --reset-offsets need --group G.")
        if opts["describe"]:
            d = cli.groups_describe(opts["group"])
            if not d.members:
                self.out(f"Consumer group '{d.group}' has no active members.")
            self.out(cli.format_table(
                ["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG",
                 "CONSUMER-ID", "HOST", "CLIENT-ID"],
                [(d.group, p.topic, p.partition, p.committed, p.end, p.lag, p.member, p.host,
                  p.client_id) for p in d.partitions]))
            return
        if not opts["topic"]:
            raise CommandError("groups --reset-offsets needs --topic T.")
        if opts["to_earliest"]:
            to, when = "earliest", None
        elif opts["to_latest"]:
            to, when = "latest", None
        elif opts["to_datetime"]:
            to, when = "datetime", cli.parse_datetime(opts["to_datetime"])
        else:
            raise CommandError("groups --reset-offsets needs one of --to-earliest, "
                               "--to-latest, --to-datetime ISO.")
        plan = cli.groups_reset_offsets(opts["group"], opts["topic"], to=to, when=when,
                                        execute=opts["execute"])
        self.out(cli.format_table(
            ["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET"],
            [(plan.group, plan.topic, p, cur, new) for p, cur, new in plan.rows]))
        if plan.executed:
            self.out(f"Offsets of group '{plan.group}' on {plan.topic} reset.")
        else:
            self.out("Dry run: nothing changed. Add --execute to apply.")

    # --- create-topics --------------------------------------------------------------------

    def do_create_topics(self, opts) -> None:
        try:
            report = create_topics()
        except TopicLayoutError as exc:
            raise CommandError(str(exc)) from None
        self.out(cli.format_table(["TOPIC", "RESULT"], report))
