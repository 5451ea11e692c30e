"""`manage.py coins_dev_setup`: what a fresh development install needs to buy coins.

`make run` runs it. It seeds only in development (DEBUG on, not the production settings) and
only what is missing: a demo coin package when none is on sale. The development settings
already give the payment webhook a secret (COINS_PAYMENT_WEBHOOK_SECRET's development default),
so the `test` provider's signed webhook works out of the box; the command says which.
"""

from __future__ import annotations

import os

from django.conf import settings
from django.core.management.base import BaseCommand

from coins.models import CoinPackage

DEMO_PACKAGE = {"name": "Demo pack", "coins": 2000, "price_minor": 999, "currency": "USD"}


def is_development() -> bool:
    module = os.environ.get("DJANGO_SETTINGS_MODULE") or settings.SETTINGS_MODULE or ""
    return bool(settings.DEBUG) and not module.endswith(".production")


class Command(BaseCommand):
    help = ("Development only: create a demo coin package when none is on sale, and show the "
            "payment webhook's settings. Does nothing outside development.")

    def handle(self, *args, **options):
        if not is_development():
            self.stdout.write("coins_dev_setup: not a development environment (DEBUG is off or "
                              "the production settings are in use); nothing seeded.")
            return
        if CoinPackage.objects.filter(active=True).exists():
            self.stdout.write("coins: a coin package is on sale already; none added.")
        else:
            package = CoinPackage.objects.create(**DEMO_PACKAGE)
            self.stdout.write(f"coins: added the package {package.name!r} (id {package.pk}): "
                              f"{package.coins} coins for {package.price_minor} "
                              f"{package.currency} minor units.")
        secret = settings.COINS_PAYMENT_WEBHOOK_SECRET
        self.stdout.write(
            f"coins: payment provider {settings.COINS_PAYMENT_PROVIDER!r}, webhook "
            f"POST /api/coins/purchases/webhook/{settings.COINS_PAYMENT_PROVIDER}/, signed with "
            + (f"COINS_PAYMENT_WEBHOOK_SECRET={secret!r} (development default)."
               if secret else "no secret: set COINS_PAYMENT_WEBHOOK_SECRET (the webhook "
               "answers 503 until then)."))
