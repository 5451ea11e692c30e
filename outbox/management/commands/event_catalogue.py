"""`manage.py event_catalogue`: write docs/events.md from the event catalogue."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from outbox import catalogue_page
from outbox.catalogue import EventValidationError


class Command(BaseCommand):
    help = ("Generate the event catalogue page (docs/events.md): every event type with its "
            "topic, record key, handlers, JSON Schema and an example.")

    def add_arguments(self, parser):
        parser.add_argument("--output", type=Path, default=catalogue_page.PAGE,
                            help="Where to write the page (default docs/events.md).")
        parser.add_argument("--check", action="store_true",
                            help="Write nothing; exit 1 when the page differs from the "
                                 "catalogue (for CI).")

    def handle(self, *args, **opts):
        try:
            text = catalogue_page.render()
        except EventValidationError as exc:
            raise CommandError(f"cannot show an example of {exc.event_type}: "
                               f"{'; '.join(exc.errors)}") from None
        path: Path = opts["output"]
        current = path.read_text() if path.exists() else None
        if opts["check"]:
            if current != text:
                raise CommandError(f"{path} is stale: run `python manage.py event_catalogue` "
                                   "and commit the result.")
            self.stdout.write(f"{path} is up to date.")
            return
        if current == text:
            self.stdout.write(f"{path} is up to date.")
            return
        path.write_text(text)
        self.stdout.write(f"wrote {path} ({text.count(chr(10) + '### ')} event types)")
