-- phase: post
-- contract: 4.4.0 no longer reads legacy_notes
DROP TABLE IF EXISTS legacy_notes;
UPDATE pmod_schema SET version = '4.4.0';
