-- phase: offline
-- PMOD 4.3.0 baseline schema
CREATE TABLE pmod_schema (version TEXT NOT NULL);
INSERT INTO pmod_schema VALUES ('4.3.0');
CREATE TABLE patients (id INTEGER PRIMARY KEY, patient_id TEXT NOT NULL UNIQUE, name TEXT NOT NULL, birth_date TEXT);
CREATE TABLE studies (id INTEGER PRIMARY KEY, patient INTEGER NOT NULL REFERENCES patients(id),
                      uid TEXT NOT NULL UNIQUE, description TEXT, study_date TEXT);
CREATE TABLE series (id INTEGER PRIMARY KEY, study INTEGER NOT NULL REFERENCES studies(id),
                     uid TEXT NOT NULL UNIQUE, modality TEXT, images INTEGER);
CREATE TABLE legacy_notes (id INTEGER PRIMARY KEY, note TEXT);
