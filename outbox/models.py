from __future__ import annotations

from django.db import models


class XID8Field(models.Field):
    """PostgreSQL `xid8`: a 64-bit, never-wrapping transaction id (PostgreSQL 13+)."""

    description = "PostgreSQL xid8"

    def db_type(self, connection) -> str:
        return "xid8"

    def from_db_value(self, value, expression, connection):
        return None if value is None else int(value)

    def to_python(self, value):
        return None if value is None else int(value)

    def get_db_prep_value(self, value, connection, prepared=False):
        # psycopg would send an int as integer, and PostgreSQL has no integer → xid8 cast;
        # an untyped text literal converts implicitly.
        return None if value is None else str(int(value))

    def get_placeholder(self, value, compiler, connection):
        return "%s::xid8"


class OutboxEvent(models.Model):
    """One event waiting for (or already given to) the relay.

    `txid` is the writing transaction's id, filled by the database (`pg_current_xact_id()`), so
    the relay can read rows in commit order (DESIGN.md §3). Rows are immutable: a trigger
    rejects UPDATE. Retention deletes delivered rows.
    """

    id = models.BigAutoField(primary_key=True)
    txid = XID8Field(db_default=models.Func(function="pg_current_xact_id",
                                            output_field=XID8Field()), editable=False)
    event_id = models.UUIDField(unique=True, editable=False)
    type = models.CharField(max_length=100)
    topic = models.CharField(max_length=100)
    key = models.CharField(max_length=200)
    # Stable hash of the key: the relay's shard is shard_hash % shards.
    shard_hash = models.IntegerField()
    headers = models.JSONField()
    payload = models.JSONField()
    created_at = models.DateTimeField(db_default=models.functions.Now(), editable=False)

    class Meta:
        db_table = "outbox_event"
        indexes = [models.Index(fields=["txid", "id"], name="outbox_event_txid_id")]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"
