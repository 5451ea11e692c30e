from django.db import migrations

SQL = """
-- Rows are immutable once written: the relay's exactly-once argument assumes a delivered row
-- never changes. Deletes (retention) stay allowed.
CREATE FUNCTION outbox_event_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'outbox_event rows are immutable (id %)', OLD.id
    USING ERRCODE = 'restrict_violation';
END $$;
CREATE TRIGGER outbox_event_no_update BEFORE UPDATE ON outbox_event
  FOR EACH ROW EXECUTE FUNCTION outbox_event_immutable();

-- Wake the relay. NOTIFY is transactional: it is delivered at commit, never for a rolled-back
-- transaction, and identical notifications of one transaction are folded into one.
CREATE FUNCTION outbox_event_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('showoff_outbox', '');
  RETURN NULL;
END $$;
CREATE TRIGGER outbox_event_notify AFTER INSERT ON outbox_event
  FOR EACH STATEMENT EXECUTE FUNCTION outbox_event_notify();
"""

REVERSE = """
DROP TRIGGER IF EXISTS outbox_event_notify ON outbox_event;
DROP FUNCTION IF EXISTS outbox_event_notify();
DROP TRIGGER IF EXISTS outbox_event_no_update ON outbox_event;
DROP FUNCTION IF EXISTS outbox_event_immutable();
"""


class Migration(migrations.Migration):
    dependencies = [("outbox", "0001_initial")]
    operations = [migrations.RunSQL(SQL, REVERSE)]
