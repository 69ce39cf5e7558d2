"""ImageServer control tool (stand-in): web | sessions | shred | queues | schema."""
import json
import os
import sys
import time
import urllib.request

from is_common import connect, settings, version

CFG = settings()


def get(path):
    with urllib.request.urlopen('http://127.0.0.1:%s%s' % (CFG['ports']['web'], path), timeout=5) as answer:
        return answer.read().decode('utf-8')


def main(what):
    if what == 'web':
        print('OK %s' % get('/').strip())
    elif what == 'sessions':
        print(json.loads(get('/sessions'))['sessions'])
    elif what == 'shred':
        path = os.path.join(CFG['run_dir'], 'shred.heartbeat')
        try:
            with open(path, encoding='ascii') as handle:
                pid, stamp, running = handle.read().split()
        except (OSError, ValueError):
            print('ShredHostService is not running (no heartbeat %s)' % path)
            return 1
        if time.time() - float(stamp) > 10 or not os.path.exists('/proc/%s' % pid):
            print('ShredHostService is not running (last heartbeat %.0fs ago)' % (time.time() - float(stamp)))
            return 1
        print('OK ShredHostService %s running (pid %s)' % (running, pid))
    elif what == 'queues':
        with connect(CFG['db']) as conn:
            siq = conn.execute('SELECT count(*) FROM StudyIntegrityQueue').fetchone()[0]
            wq = conn.execute("SELECT count(*) FROM WorkQueue WHERE WorkQueueTypeEnum = 'ReconcileStudy'").fetchone()[0]
            total = conn.execute('SELECT count(*) FROM WorkQueue').fetchone()[0]
        print('StudyIntegrityQueue=%d WorkQueueReconcile=%d WorkQueue=%d' % (siq, wq, total))
    elif what == 'schema':
        with connect(CFG['db']) as conn:
            print('OK schema=%s release=%s' % (conn.execute('SELECT Version FROM DatabaseVersion').fetchone()[0], version()))
    else:
        print('usage: isctl.py web|sessions|shred|queues|schema')
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else ''))
