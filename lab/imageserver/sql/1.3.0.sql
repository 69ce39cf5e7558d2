-- ImageServer 1.3.0 baseline (stand-in for the vendor's SQL Server schema; PostgreSQL here)
CREATE TABLE DatabaseVersion (Version varchar(32) NOT NULL);
CREATE TABLE Filesystem (FilesystemKey serial PRIMARY KEY, FilesystemPath varchar(1024) NOT NULL, Description varchar(128));
CREATE TABLE Study (StudyKey serial PRIMARY KEY, StudyInstanceUid varchar(64) NOT NULL UNIQUE, PatientId varchar(64),
                    PatientsName varchar(64), FilesystemKey integer NOT NULL REFERENCES Filesystem,
                    NumberOfStudyRelatedInstances integer NOT NULL DEFAULT 0);
CREATE TABLE WorkQueue (WorkQueueKey serial PRIMARY KEY, WorkQueueTypeEnum varchar(32) NOT NULL, StudyKey integer,
                        ScheduledTime timestamptz NOT NULL DEFAULT now(), Status varchar(16) NOT NULL DEFAULT 'Pending');
CREATE TABLE StudyIntegrityQueue (StudyIntegrityQueueKey serial PRIMARY KEY, StudyKey integer, Reason varchar(64) NOT NULL,
                                  InsertTime timestamptz NOT NULL DEFAULT now());
CREATE TABLE Alert (AlertKey serial PRIMARY KEY, InsertTime timestamptz NOT NULL DEFAULT now(), Component varchar(64),
                    Content varchar(512));
CREATE TABLE Device (DeviceKey serial PRIMARY KEY, AeTitle varchar(16) NOT NULL, IpAddress varchar(64), Port integer);
INSERT INTO DatabaseVersion VALUES ('1.3.0');
