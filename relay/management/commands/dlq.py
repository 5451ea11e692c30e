"""`manage.py dlq list [<topic>]|replay <topic>`: inspect and replay dead letters
(relay/dlq.py); `dlq list` alone gives an overview of every dead-letter topic."""

from __future__ import annotations

from django.core.management.base import CommandError

from outbox.catalogue import TOPICS
from relay import cli, dlq
from relay.kafka import dlq_topic_name, ensure_enabled


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


class Command(cli.OperatorCommand):
    help = "List and replay the dead letters of a topic (<topic>.dlq)."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION",
                                    parser_class=cli.OneLineParser)
        ls = sub.add_parser("list", help="Dead letters with reason, origin, attempts, status; "
                                         "without a topic, an overview of every DLQ.")
        ls.add_argument("topic", nargs="?",
                        help="Logical topic (post-events); reads post-events.dlq.")
        ls.add_argument("--consumer", help="Only this consumer's dead letters.")
        ls.add_argument("--full", action="store_true", help="Do not shorten error messages.")

        rp = sub.add_parser("replay", help="Re-publish dead letters through the outbox.")
        rp.add_argument("topic")
        which = rp.add_mutually_exclusive_group(required=True)
        which.add_argument("--event-id", action="append", default=[], dest="event_ids",
                           metavar="ID", help="Replay this event (repeatable).")
        which.add_argument("--all", action="store_true", help="Replay every dead letter.")
        rp.add_argument("--consumer", help="Only this consumer's dead letters.")

    def handle(self, *args, **opts):
        ensure_enabled(f"dlq {opts['action']}")
        if opts["action"] == "list" and not opts["topic"]:
            self.overview(consumer=opts["consumer"])
            return
        topic = opts["topic"].removesuffix(".dlq")
        if topic not in TOPICS:
            raise CommandError(f"unknown topic {opts['topic']!r}; topics are: "
                               f"{', '.join(TOPICS)}.")
        try:
            letters = dlq.read_dead_letters(topic)
        except dlq.DeadLetterError as exc:
            raise CommandError(str(exc)) from None
        if opts["consumer"]:
            letters = [d for d in letters if d.consumer == opts["consumer"]]
        if opts["action"] == "list":
            self.list(topic, letters, full=opts["full"])
        else:
            self.replay(topic, letters, opts)

    def overview(self, *, consumer: str | None) -> None:
        """One line per dead-letter topic, in the catalogue's order."""
        rows = []
        total = pending = 0
        missing = False
        for topic in TOPICS:
            try:
                letters = dlq.read_dead_letters(topic)
            except dlq.DeadLetterError as exc:
                if "does not exist" not in str(exc):
                    raise CommandError(str(exc)) from None
                missing = True
                rows.append((dlq_topic_name(topic), "missing", "-", "-", "-", "-", "-", "-"))
                continue
            if consumer:
                letters = [d for d in letters if d.consumer == consumer]
            states = list(dlq.status_of(letters).values())
            times = sorted(d.h(dlq.H_TIME) for d in letters if d.h(dlq.H_TIME))
            consumers = ",".join(sorted({d.consumer for d in letters if d.consumer})) or "-"
            rows.append((dlq_topic_name(topic), len(letters), states.count("pending"),
                         states.count("replayed"), states.count("applied"), consumers,
                         times[0] if times else "-", times[-1] if times else "-"))
            total += len(letters)
            pending += states.count("pending")
        self.stdout.write(cli.format_table(
            ["DLQ-TOPIC", "LETTERS", "PENDING", "REPLAYED", "APPLIED", "CONSUMERS", "OLDEST",
             "NEWEST"], rows))
        footer = (f"\n{total} dead letter(s), {pending} pending. Details: manage.py dlq list "
                  "<topic>.")
        if missing:
            footer += " Missing topics: manage.py kafka create-topics."
        self.stdout.write(footer)

    def list(self, topic: str, letters: list[dlq.DeadLetter], *, full: bool) -> None:
        if not letters:
            self.stdout.write(f"{dlq_topic_name(topic)} holds no dead letters.")
            return
        status = dlq.status_of(letters)
        width = 10_000 if full else 70
        self.stdout.write(cli.format_table(
            ["DLQ-OFFSET", "TIME", "CONSUMER", "EVENT-ID", "TYPE", "ORIGIN", "ATTEMPTS",
             "STATUS", "REASON"],
            [(f"{d.dlq_partition}@{d.dlq_offset}", d.h(dlq.H_TIME) or "-", d.consumer or "-",
              d.original_event_id or "-", d.event_type or "-", d.origin, d.attempts,
              status[(d.dlq_partition, d.dlq_offset)], _short(d.reason, width))
             for d in letters]))

    def replay(self, topic: str, letters: list[dlq.DeadLetter], opts) -> None:
        chosen = dlq.select_for_replay(letters, event_ids=opts["event_ids"])
        if opts["event_ids"]:
            found = {d.original_event_id.lower() for d in chosen} | {
                d.event_id.lower() for d in chosen}
            missing = [e for e in opts["event_ids"] if e.lower() not in found]
            if missing:
                raise CommandError(f"no dead letter in {dlq_topic_name(topic)} for event(s) "
                                   f"{', '.join(missing)}; see `manage.py dlq list {topic}`.")
        if not chosen:
            self.stdout.write(f"{dlq_topic_name(topic)} holds no dead letters to replay.")
            return
        results = [dlq.replay(d) for d in chosen]
        self.stdout.write(cli.format_table(
            ["CONSUMER", "EVENT-ID", "TYPE", "RESULT", "DETAIL"],
            [(r.letter.consumer or "-", r.letter.original_event_id or "-",
              r.letter.event_type or "-", r.outcome, r.detail) for r in results]))
        failed = [r for r in results if r.failed]
        if failed:
            raise CommandError(f"{len(failed)} of {len(results)} dead letter(s) could not be "
                               "replayed (see RESULT above).")
