-- ImageServer 2.0.0: the installer's schema upgrade from 1.3.0, one statement per step (its progress)
ALTER TABLE Study ADD COLUMN StudySizeInKB bigint NOT NULL DEFAULT 0;
CREATE TABLE ServiceLock (ServiceLockKey serial PRIMARY KEY, ServiceLockTypeEnum varchar(32) NOT NULL, FilesystemKey integer REFERENCES Filesystem, ScheduledTime timestamptz NOT NULL DEFAULT now(), Done integer NOT NULL DEFAULT 0, Total integer NOT NULL DEFAULT 0, Status varchar(16) NOT NULL DEFAULT 'Pending');
ALTER TABLE WorkQueue ADD COLUMN ProcessorId varchar(64);
DELETE FROM Alert;
UPDATE DatabaseVersion SET Version = '2.0.0';
