-- 6.0.52: the patient's insurance number (SNILS)
ALTER TABLE KS_PATIENTS ADD SNILS VARCHAR(14);
