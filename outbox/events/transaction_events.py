"""`transaction-events`: coins bought, sent, granted, withdrawn and adjusted (`coins/`).

Record key: the id of the user whose action it is (the buyer, the sender of a transfer or tip,
the rewarded user, the user withdrawing, the user whose wallet an operator adjusted). All of one
user's own money movements are therefore on one partition, in commit order. A transfer also
credits the recipient; the event carries `recipient_id` (and `post_id` for a tip) so a
notification consumer needs no database lookup, but the recipient's incoming transfers are not
ordered relative to their own actions (no single key can order both sides of a transfer).

Every event carries `transaction_id`, the ledger transaction (`coins.LedgerTransaction`) that
moved the coins, and amounts in whole coins (integers).
"""

from __future__ import annotations

from outbox.catalogue import ID, NAME, NULLABLE_ID, TEXT, UUID_STR, EventType, obj, register

COINS = {"type": "integer", "minimum": 1}

register(
    EventType(
        type="coins.purchased",
        topic="transaction-events",
        key="user_id",
        description="A confirmed payment credited a coin package to the buyer's wallet.",
        schema=obj(
            {
                "user_id": ID,
                "order_id": UUID_STR,
                "package_id": NULLABLE_ID,
                "coins": COINS,
                "price_minor": {"type": "integer", "minimum": 0},
                "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
                "provider": NAME,
                "transaction_id": ID,
            }
        ),
    ),
    EventType(
        type="coins.transferred",
        topic="transaction-events",
        key="sender_id",
        description="Coins sent from one user to another; a tip when post_id is set.",
        schema=obj(
            {
                "transfer_id": ID,
                "sender_id": ID,
                "recipient_id": ID,
                "amount": COINS,
                "post_id": NULLABLE_ID,
                "kind": {"type": "string", "enum": ["transfer", "tip"]},
                "note": {"type": "string", "maxLength": 140},
                "transaction_id": ID,
            }
        ),
    ),
    EventType(
        type="coins.rewarded",
        topic="transaction-events",
        key="user_id",
        description="A reward rule granted coins (at most once per rule, user and period).",
        schema=obj(
            {
                "grant_id": ID,
                "user_id": ID,
                "rule": NAME,
                "period_key": {"type": "string", "maxLength": 64},
                "amount": COINS,
                "transaction_id": ID,
            }
        ),
    ),
    EventType(
        type="coins.withdrawal_requested",
        topic="transaction-events",
        key="user_id",
        description="A user asked to cash out; the coins are held until an operator decides.",
        schema=obj(
            {
                "withdrawal_id": ID,
                "user_id": ID,
                "amount": COINS,
                "fee": {"type": "integer", "minimum": 0},
                "transaction_id": ID,
            }
        ),
    ),
    EventType(
        type="coins.withdrawal_completed",
        topic="transaction-events",
        key="user_id",
        description="An operator approved a withdrawal and the payout was sent.",
        schema=obj(
            {
                "withdrawal_id": ID,
                "user_id": ID,
                "amount": COINS,
                "fee": {"type": "integer", "minimum": 0},
                "payout_reference": NAME,
                "reviewed_by": ID,
                "transaction_id": ID,
            }
        ),
    ),
    EventType(
        type="coins.withdrawal_rejected",
        topic="transaction-events",
        key="user_id",
        description="An operator rejected a withdrawal; the held coins went back to the user.",
        schema=obj(
            {
                "withdrawal_id": ID,
                "user_id": ID,
                "amount": COINS,
                "reason": TEXT,
                "reviewed_by": ID,
                "transaction_id": ID,
            }
        ),
    ),
    EventType(
        type="coins.adjusted",
        topic="transaction-events",
        key="user_id",
        description="An operator credited (amount > 0) or debited (amount < 0) a wallet by hand.",
        schema=obj(
            {
                "adjustment_id": ID,
                "user_id": ID,
                "amount": {"type": "integer", "not": {"const": 0}},
                "reason": {"type": "string", "minLength": 1},
                "operator_id": ID,
                "transaction_id": ID,
            }
        ),
    ),
)
