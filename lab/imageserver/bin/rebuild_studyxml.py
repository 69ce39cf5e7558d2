"""Rebuild the Study XML files the way the Service Scheduling service does it: one scheduled FilesystemRebuildXml entry
(table ServiceLock) per filesystem, worked off by the ShredHostService; prints the progress (files done / total) until
every entry is done.  Exit 1 when an entry failed, 2 when nothing is done within --timeout seconds."""
import argparse
import sys
import time

from is_common import connect, settings


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--timeout', type=float, default=600)
    args = parser.parse_args()
    cfg = settings()
    with connect(cfg['db']) as conn:
        for key, path in conn.execute('SELECT FilesystemKey, FilesystemPath FROM Filesystem ORDER BY FilesystemKey').fetchall():
            total = conn.execute('SELECT count(*) FROM Study WHERE FilesystemKey = %s', (key,)).fetchone()[0]
            conn.execute("INSERT INTO ServiceLock (ServiceLockTypeEnum, FilesystemKey, ScheduledTime, Done, Total, Status) "
                         "VALUES ('FilesystemRebuildXml', %s, now(), 0, %s, 'Pending')", (key, total))
            print('scheduled the Study XML rebuild of filesystem %s (%d studies)' % (path, total), flush=True)
        last, deadline = None, time.monotonic() + args.timeout
        while True:
            rows = conn.execute("SELECT Done, Total, Status FROM ServiceLock WHERE ServiceLockTypeEnum = 'FilesystemRebuildXml' "
                                "AND Status <> 'Superseded'").fetchall()
            done, total = sum(r[0] for r in rows), sum(r[1] for r in rows)
            if (done, total) != last:
                print('Study XML rebuild: %d/%d files' % (done, total), flush=True)
                last = (done, total)
                deadline = time.monotonic() + args.timeout
            if any(r[2] == 'Failed' for r in rows):
                print('ERROR a Study XML rebuild failed', flush=True)
                return 1
            if all(r[2] == 'Done' for r in rows):
                conn.execute("UPDATE ServiceLock SET Status = 'Superseded' WHERE ServiceLockTypeEnum = 'FilesystemRebuildXml' "
                             "AND Status = 'Done'")
                print('Study XML rebuild done: %d/%d files' % (done, total), flush=True)
                return 0
            if time.monotonic() > deadline:
                print('ERROR no progress for %.0fs (is the ShredHostService running?)' % args.timeout, flush=True)
                return 2
            time.sleep(0.3)


if __name__ == '__main__':
    sys.exit(main())
