"""The relay's position becomes a tick `(s_prev, s_cur, cursor_id)` (DESIGN.md §3).

A `(txid, last_id)` copy written by the relay before ticks maps to the tick `T:T:` →
`T+1:T+1:` resumed after `last_id` (relay/position.py `Position.from_legacy` says why; `(0, 0)`
maps to the start of the outbox). The Kafka checkpoint record, the source of truth, is converted
the same way when the relay reads it. `txid` and `last_id` now name the last delivered row.

A trigger keeps the position from moving backwards, whoever writes it: an UPDATE to an older
tick, or to a smaller cursor in the same tick, is skipped.
"""

import django.db.models
from django.db import migrations

import relay.models
import outbox.models

CONVERT = """
UPDATE relay_position SET
  s_prev = CASE WHEN txid = '0'::xid8 THEN '1:1:'
                ELSE txid::text || ':' || txid::text || ':' END::pg_snapshot,
  s_cur = CASE WHEN txid = '0'::xid8 THEN '1:1:'
               ELSE (txid::text::numeric + 1)::text || ':' || (txid::text::numeric + 1)::text
                    || ':' END::pg_snapshot,
  cursor_id = CASE WHEN txid = '0'::xid8 THEN 0 ELSE last_id END;
"""

GUARD = """
CREATE FUNCTION relay_position_forward() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  -- Same tick: the cursor only grows. Another tick: NEW.s_cur must show every transaction
  -- OLD.s_cur shows (its xmax is not lower, and none of its running ids finished in OLD).
  IF NEW.s_cur::text = OLD.s_cur::text THEN
    IF NEW.cursor_id < OLD.cursor_id THEN
      RETURN NULL;
    END IF;
  ELSIF pg_snapshot_xmax(NEW.s_cur) < pg_snapshot_xmax(OLD.s_cur)
     OR EXISTS (SELECT 1 FROM pg_snapshot_xip(NEW.s_cur) AS x
                WHERE pg_visible_in_snapshot(x, OLD.s_cur)) THEN
    RETURN NULL;
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER relay_position_forward BEFORE UPDATE ON relay_position
  FOR EACH ROW EXECUTE FUNCTION relay_position_forward();
"""

UNGUARD = """
DROP TRIGGER IF EXISTS relay_position_forward ON relay_position;
DROP FUNCTION IF EXISTS relay_position_forward();
"""

# Going back is lossy: the old relay resumes after the last delivered row in (txid, id) order.
BACK = "UPDATE relay_position SET txid = coalesce(txid, '0'::xid8), last_id = coalesce(last_id, 0);"


class Migration(migrations.Migration):
    dependencies = [("relay", "0001_initial")]

    operations = [
        migrations.AddField("relayposition", "s_prev", relay.models.SnapshotField(null=True)),
        migrations.AddField("relayposition", "s_cur", relay.models.SnapshotField(null=True)),
        migrations.AddField("relayposition", "cursor_id",
                            django.db.models.BigIntegerField(default=0)),
        migrations.AddField("relayposition", "restored_max_id",
                            django.db.models.BigIntegerField(blank=True, null=True)),
        migrations.AddField("relayposition", "restored_snapshot",
                            relay.models.SnapshotField(blank=True, null=True)),
        migrations.RunSQL(CONVERT, BACK),
        migrations.AlterField("relayposition", "s_prev", relay.models.SnapshotField()),
        migrations.AlterField("relayposition", "s_cur", relay.models.SnapshotField()),
        migrations.AlterField("relayposition", "txid", outbox.models.XID8Field(null=True)),
        migrations.AlterField("relayposition", "last_id",
                              django.db.models.BigIntegerField(null=True)),
        migrations.RunSQL(GUARD, UNGUARD),
    ]
