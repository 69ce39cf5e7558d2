-- phase: offline
-- deliberately broken for the rollback test
ALTER TABLE studies ADD COLUMN status TEXT NOT NULL DEFAULT 'archived';
UPDATE studies SET no_such_column = 1;
UPDATE pmod_schema SET version = '4.3.2';
