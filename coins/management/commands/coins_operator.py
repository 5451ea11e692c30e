"""`manage.py coins_operator kyc|approve|reject ...`: the operator's coin actions from a shell,
the same services as the admin's actions (the operator is recorded on each)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from coins import services
from coins.errors import CoinsError

User = get_user_model()


class Command(BaseCommand):
    help = "Operator actions on coins: record a KYC check, approve or reject a withdrawal."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        kyc = sub.add_parser("kyc", help="Record that a user's identity was verified.")
        kyc.add_argument("username")
        approve = sub.add_parser("approve", help="Pay a pending withdrawal out.")
        approve.add_argument("withdrawal_id", type=int)
        reject = sub.add_parser("reject", help="Reject a pending withdrawal (coins go back).")
        reject.add_argument("withdrawal_id", type=int)
        reject.add_argument("--reason", required=True, help="Shown to the user.")
        for p in (kyc, approve, reject):
            p.add_argument("--operator", required=True,
                           help="Username of the staff member acting (recorded).")

    def handle(self, *args, **opts):
        operator = User.objects.filter(username=opts["operator"]).first()
        if operator is None or not operator.is_staff:
            raise CommandError(f"{opts['operator']!r} is not a staff account; name yours with "
                               "--operator (create one with `manage.py createsuperuser`).")
        try:
            if opts["action"] == "kyc":
                user = User.objects.filter(username=opts["username"]).first()
                if user is None:
                    raise CommandError(f"no user {opts['username']!r}.")
                services.wallet_kyc_verify(user=user, operator=operator)
                self.stdout.write(f"identity of {user.username} recorded as verified.")
            elif opts["action"] == "approve":
                w = services.withdrawal_approve(withdrawal_id=opts["withdrawal_id"],
                                                operator=operator)
                self.stdout.write(f"withdrawal {w.pk} completed: {w.amount - w.fee} coins paid "
                                  f"out (fee {w.fee}), payout reference {w.payout_reference}.")
            else:
                w = services.withdrawal_reject(withdrawal_id=opts["withdrawal_id"],
                                               operator=operator, reason=opts["reason"])
                self.stdout.write(f"withdrawal {w.pk} rejected; {w.amount} coins returned.")
        except CoinsError as exc:
            raise CommandError(exc.message) from None
