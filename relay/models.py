from __future__ import annotations

from django.db import models

from outbox.models import XID8Field


class RelayPosition(models.Model):
    """Where a relay shard is, recorded in the database after each Kafka commit.

    Kafka's checkpoint topic is the source of truth (DESIGN.md §3); this copy serves the admin,
    metrics and outbox retention, which deletes only rows at or below it.
    """

    shards = models.PositiveIntegerField()
    shard = models.PositiveIntegerField()
    txid = XID8Field()
    last_id = models.BigIntegerField()
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
        return f"shard {self.shard}/{self.shards} at ({self.txid}, {self.last_id})"


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
