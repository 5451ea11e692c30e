"""`manage.py coins_verify`: check the ledger's invariants; exit 1 if any is broken."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from coins.selectors import ledger_verify


class Command(BaseCommand):
    help = ("Check the coins ledger: all balances sum to zero, every cached balance equals the "
            "sum of its entries, every transaction is balanced, no user balance is negative.")

    def handle(self, *args, **options):
        report = ledger_verify()
        self.stdout.write(f"sum of all balances: {report.total}")
        for wallet, cached, summed in report.wallets_off:
            self.stdout.write(f"wallet {wallet}: cached balance {cached}, entries sum {summed}")
        for txn, total in report.unbalanced:
            self.stdout.write(f"transaction {txn}: entries sum to {total}")
        for wallet, balance in report.negative_users:
            self.stdout.write(f"wallet {wallet}: negative user balance {balance}")
        if not report.ok:
            raise CommandError("the coins ledger is inconsistent (details above)")
        self.stdout.write(self.style.SUCCESS("ledger OK"))
