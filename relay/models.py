from __future__ import annotations

from django.db import models

from outbox.models import XID8Field


class SnapshotField(models.Field):
    """PostgreSQL `pg_snapshot` (`xmin:xmax:xip,...`), handled as its text in Python."""

    description = "PostgreSQL pg_snapshot"

    def db_type(self, connection) -> str:
        return "pg_snapshot"

    def from_db_value(self, value, expression, connection):
        return None if value is None else str(value)

    def to_python(self, value):
        return None if value is None else str(value)

    def get_db_prep_value(self, value, connection, prepared=False):
        return None if value is None else str(value)

    def get_placeholder(self, value, compiler, connection):
        return "%s::pg_snapshot"


class RelayPosition(models.Model):
    """Where a relay shard is, recorded in the database after each Kafka commit.

    Kafka's checkpoint topic is the source of truth (DESIGN.md §3); this copy serves the admin,
    metrics and outbox retention, which deletes only rows visible in `s_prev`. The position is
    the tick `(s_prev, s_cur)` being delivered and `cursor_id`, the last row of it in Kafka
    (relay/position.py); a database trigger refuses a write that would move it backwards (a
    zombie relay's late copy, say).
    """

    shards = models.PositiveIntegerField()
    shard = models.PositiveIntegerField()
    s_prev = SnapshotField()
    s_cur = SnapshotField()
    cursor_id = models.BigIntegerField(default=0)
    # Rows restored from another cluster (`run_relay --reanchor`); see relay/position.py.
    restored_max_id = models.BigIntegerField(null=True, blank=True)
    restored_snapshot = SnapshotField(null=True, blank=True)
    # The last delivered row (for the admin and metrics; none after a re-anchor).
    txid = XID8Field(null=True)
    last_id = models.BigIntegerField(null=True)
    transactional_id = models.CharField(max_length=255)
    events_total = models.BigIntegerField(default=0)
    batches_total = models.BigIntegerField(default=0)
    last_commit_at = models.DateTimeField(null=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "relay_position"
        constraints = [
            models.UniqueConstraint(fields=["shards", "shard"], name="relay_position_shard"),
        ]

    def __str__(self) -> str:
        return f"shard {self.shard}/{self.shards} at {self.position}"

    @property
    def position(self):
        from .position import Position, Restored, Snapshot

        restored = None
        if self.restored_max_id is not None and self.restored_snapshot:
            restored = Restored(self.restored_max_id, Snapshot.parse(self.restored_snapshot))
        return Position(Snapshot.parse(self.s_prev), Snapshot.parse(self.s_cur), self.cursor_id,
                        restored)


class InboxEntry(models.Model):
    """One event applied by one consumer: the exactly-once guard of DESIGN.md §4.

    Inserted in the same transaction as the handler's effects; a unique conflict on
    (consumer, event_id) means the event was already applied, so the repeat is skipped.
    """

    id = models.BigAutoField(primary_key=True)
    consumer = models.CharField(max_length=100)
    event_id = models.UUIDField()
    event_type = models.CharField(max_length=100)
    topic = models.CharField(max_length=255)
    partition = models.IntegerField()
    offset = models.BigIntegerField()
    processed_at = models.DateTimeField(db_default=models.functions.Now())

    class Meta:
        db_table = "relay_inbox"
        verbose_name_plural = "inbox entries"
        constraints = [
            models.UniqueConstraint(fields=["consumer", "event_id"], name="relay_inbox_once"),
        ]
        indexes = [models.Index(fields=["processed_at"], name="relay_inbox_processed_at")]

    def __str__(self) -> str:
        return f"{self.consumer} {self.event_type} {self.event_id}"


class SetAsideEvent(models.Model):
    """An outbox event the relay did not deliver because Kafka would never accept it (larger
    than the producer's `message.max.bytes` or the topic's `max.message.bytes`).

    `publish` refuses such events (KAFKA_MESSAGE_MAX_BYTES), so one reaches the relay only when
    the limits changed or a row was written around `publish`. The relay writes this row before
    the Kafka commit that moves its position past the event, keeps a copy of the event (outbox
    retention does not touch it), logs the event id and counts `showoff_relay_set_aside_total`.
    An operator fixes the cause and, if the event still matters, publishes a corrected one.
    """

    id = models.BigAutoField(primary_key=True)
    outbox_id = models.BigIntegerField()
    event_id = models.UUIDField(unique=True)
    txid = XID8Field()
    type = models.CharField(max_length=100)
    topic = models.CharField(max_length=100)
    key = models.CharField(max_length=200)
    headers = models.JSONField()
    payload = models.JSONField()
    size_bytes = models.IntegerField(help_text="Record size as the relay measured it; -1 when "
                                                "the broker refused the record.")
    limit_bytes = models.IntegerField()
    reason = models.TextField()
    shards = models.PositiveIntegerField()
    shard = models.PositiveIntegerField()
    position = models.TextField(help_text="The relay's position that moved past the event.")
    set_aside_at = models.DateTimeField()

    class Meta:
        db_table = "relay_set_aside"
        verbose_name = "set-aside event"
        indexes = [models.Index(fields=["set_aside_at"], name="relay_set_aside_at")]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id} (set aside: {self.reason})"
