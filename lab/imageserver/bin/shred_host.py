"""ShredHostService stand-in: works the WorkQueue and the Study Integrity Queue off, one entry of each per tick, and
(from 1.5 on, the Service Scheduling service) the scheduled Study XML rebuilds in table ServiceLock.

A WorkQueue entry whose ScheduledTime lies in the future waits, as in the real product.  A heartbeat file in the
site's run folder (settings run_dir) says it is alive (bin/isctl.py shred reads it); while the file shred.pause exists there, the queues are not worked on."""
import os
import signal
import time

from is_common import ROOT, connect, say, settings, version, version_tuple

VERSION = version()
CFG = settings()
TICK = float(CFG.get('shred', {}).get('seconds_per_item', 0.7))
HEARTBEAT = os.path.join(CFG['run_dir'], 'shred.heartbeat')
PAUSE = os.path.join(CFG['run_dir'], 'shred.pause')   # while it exists the queues wait (the tests hold them with it)
RUNNING = [True]


def stop(_signum, _frame):
    RUNNING[0] = False


def beat():
    tmp = HEARTBEAT + '.tmp'
    with open(tmp, 'w', encoding='ascii') as handle:
        handle.write('%d %f %s\n' % (os.getpid(), time.time(), VERSION))
    os.replace(tmp, HEARTBEAT)


def work_queues(conn):
    cur = conn.execute('DELETE FROM StudyIntegrityQueue WHERE StudyIntegrityQueueKey = '
                       '(SELECT min(StudyIntegrityQueueKey) FROM StudyIntegrityQueue) RETURNING Reason')
    for (reason,) in cur.fetchall():
        say('shred', 'Study Integrity Queue: processed an entry (%s)' % reason)
    cur = conn.execute('DELETE FROM WorkQueue WHERE WorkQueueKey = (SELECT min(WorkQueueKey) FROM WorkQueue '
                       'WHERE ScheduledTime <= now()) RETURNING WorkQueueTypeEnum')
    for (kind,) in cur.fetchall():
        say('shred', 'WorkQueue: processed a %s entry' % kind)


def rebuild_study_xml(conn, batch=4):
    rows = conn.execute("SELECT l.ServiceLockKey, l.FilesystemKey, l.Done, f.FilesystemPath FROM ServiceLock l "
                        "JOIN Filesystem f ON f.FilesystemKey = l.FilesystemKey "
                        "WHERE l.ServiceLockTypeEnum = 'FilesystemRebuildXml' AND l.Status IN ('Pending', 'Running') "
                        "AND l.ScheduledTime <= now() ORDER BY l.ServiceLockKey LIMIT 1").fetchall()
    for key, fs_key, done, path in rows:
        studies = [r[0] for r in conn.execute('SELECT StudyInstanceUid FROM Study WHERE FilesystemKey = %s ORDER BY StudyKey',
                                              (fs_key,)).fetchall()]
        for uid in studies[done:done + batch]:
            folder = os.path.join(path, uid)
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, uid + '.xml.tmp'), 'w', encoding='utf-8') as handle:
                handle.write('<?xml version="1.0"?>\n<StudyXml version="%s" studyInstanceUid="%s"/>\n' % (VERSION, uid))
            os.replace(os.path.join(folder, uid + '.xml.tmp'), os.path.join(folder, uid + '.xml'))
        done = min(len(studies), done + batch)
        status = 'Done' if done >= len(studies) else 'Running'
        conn.execute('UPDATE ServiceLock SET Done = %s, Total = %s, Status = %s WHERE ServiceLockKey = %s',
                     (done, len(studies), status, key))


def main():
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    say('shred', 'ShredHostService %s started from %s, one queue entry per %.1fs' % (VERSION, ROOT, TICK))
    conn = None
    while RUNNING[0]:
        beat()
        try:
            conn = conn or connect(CFG['db'])
            if not os.path.exists(PAUSE):
                work_queues(conn)
            if version_tuple(VERSION) >= (1, 5):
                rebuild_study_xml(conn)
        except Exception as exc:  # pylint: disable=broad-except
            say('shred', 'database error, retrying: %s' % str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            if conn is not None:
                conn.close()
            conn = None
        end = time.monotonic() + TICK
        while RUNNING[0] and time.monotonic() < end:
            time.sleep(0.05)
    if conn is not None:
        conn.close()
    os.unlink(HEARTBEAT)
    say('shred', 'ShredHostService stopped')


if __name__ == '__main__':
    main()
