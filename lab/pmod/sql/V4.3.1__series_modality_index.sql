-- phase: pre
-- expand: an index the old version does not mind, built before the stop
CREATE INDEX IF NOT EXISTS series_modality ON series (modality);
