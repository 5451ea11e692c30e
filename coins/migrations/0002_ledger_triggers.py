from django.db import migrations

SQL = """
-- The ledger is append-only: a movement is corrected by another movement, never by editing or
-- deleting one (the audit trail and the cached balances both rely on it).
CREATE FUNCTION coins_ledger_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '% rows are immutable (id %): post a correcting movement instead',
    TG_TABLE_NAME, OLD.id USING ERRCODE = 'restrict_violation';
END $$;
CREATE TRIGGER coins_entry_immutable BEFORE UPDATE OR DELETE ON coins_entry
  FOR EACH ROW EXECUTE FUNCTION coins_ledger_immutable();
CREATE TRIGGER coins_transaction_immutable BEFORE UPDATE OR DELETE ON coins_transaction
  FOR EACH ROW EXECUTE FUNCTION coins_ledger_immutable();

-- Double entry: the entries of one ledger transaction sum to zero. Checked at commit (deferred),
-- after every entry of the transaction is written; a failing check aborts the commit.
CREATE FUNCTION coins_entry_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  total numeric;
BEGIN
  SELECT sum(amount) INTO total FROM coins_entry WHERE transaction_id = NEW.transaction_id;
  IF total <> 0 THEN
    RAISE EXCEPTION 'ledger transaction % is unbalanced: its entries sum to %',
      NEW.transaction_id, total USING ERRCODE = 'check_violation';
  END IF;
  RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER coins_entry_balanced AFTER INSERT ON coins_entry
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION coins_entry_balanced();
"""

REVERSE = """
DROP TRIGGER IF EXISTS coins_entry_balanced ON coins_entry;
DROP FUNCTION IF EXISTS coins_entry_balanced();
DROP TRIGGER IF EXISTS coins_transaction_immutable ON coins_transaction;
DROP TRIGGER IF EXISTS coins_entry_immutable ON coins_entry;
DROP FUNCTION IF EXISTS coins_ledger_immutable();
"""


class Migration(migrations.Migration):
    dependencies = [("coins", "0001_initial")]
    operations = [migrations.RunSQL(SQL, REVERSE)]
