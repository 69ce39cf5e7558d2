-- phase: offline
-- needs the downtime: 4.4.0 reads studies.status
ALTER TABLE studies ADD COLUMN status TEXT NOT NULL DEFAULT 'archived';
UPDATE studies SET status = 'new' WHERE study_date >= '2024-01-01';
UPDATE pmod_schema SET version = '4.3.2';
