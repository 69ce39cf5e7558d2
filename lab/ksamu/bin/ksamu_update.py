"""The KSAMU updater stand-in: applies the release's database scripts to the Firebird database, writing a progress log.

    ksamu_update.py --config config/server.ini --log LOGFILE

The release carries scripts/<scripts version>/NNN_<what>.sql (statements ended by ";" at a line's end). Every folder
newer than the database's KS_VERSION.SCRIPTS is applied in order, each script in its own transaction, then
KS_VERSION is set to the release (scripts = the first three blocks, app = all four). Scripts are applied only while
the database is locked (KS_STATE locked = 1); with none to apply only the application's version is recorded.
The log gets "<time> INFO <n>/<total> ..." progress lines and "<time> ERROR ..." on a failure (exit code 1).
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ksamu_common as common  # noqa: E402  pylint: disable=wrong-import-position,import-error


def blocks(version):
    return tuple(int(b) for b in version.split('.'))


def statements(text):
    parts, current = [], []
    for line in text.splitlines():
        if line.strip().startswith('--') and not current:
            continue
        current.append(line)
        if line.rstrip().endswith(';'):
            parts.append('\n'.join(current).rstrip().rstrip(';'))
            current = []
    if ''.join(current).strip():
        parts.append('\n'.join(current))
    return parts


def main(argv):
    config = common.read_config(argv[argv.index('--config') + 1])
    log_path = argv[argv.index('--log') + 1]
    install = common.INSTALL
    release = common.release_version(install)
    log = open(log_path, 'a', encoding='utf-8')  # pylint: disable=consider-using-with
    conn = None

    def say(level, text):
        log.write('%s %s %s\n' % (common.now(), level, text))
        log.flush()

    try:
        say('INFO', 'KSAMU update to %s started' % release)
        conn = common.connect(config)
        cur = conn.cursor()
        cur.execute('SELECT SCRIPTS FROM KS_VERSION')
        current = cur.fetchone()[0]
        conn.commit()
        folder = os.path.join(install, 'scripts')
        pending = sorted((v for v in os.listdir(folder) if blocks(v) > blocks(current)), key=blocks) if os.path.isdir(folder) else []
        scripts = [(v, name) for v in pending for name in sorted(os.listdir(os.path.join(folder, v))) if name.endswith('.sql')]
        say('INFO', 'database scripts %s, release %s: %d script(s) to apply' % (current, common.scripts_version(release), len(scripts)))
        if scripts:
            cur.execute("SELECT VAL FROM KS_STATE WHERE NAME = 'locked'")
            if cur.fetchone()[0] != '1':
                raise RuntimeError('the database is not locked; scripts are applied only under the lock')
            conn.commit()
        for number, (version, name) in enumerate(scripts, 1):
            say('INFO', '%d/%d applying %s/%s' % (number, len(scripts), version, name))
            with open(os.path.join(folder, version, name), encoding='utf-8') as handle:
                for statement in statements(handle.read()):
                    cur.execute(statement)
                    conn.commit()   # Firebird: DDL is committed before the next statement uses it
            time.sleep(0.3)
        cur.execute('UPDATE KS_VERSION SET SCRIPTS = ?, APP = ?', (common.scripts_version(release), release))
        conn.commit()
        conn.close()
        say('INFO', 'KSAMU update to %s finished' % release)
        return 0
    except Exception as exc:  # pylint: disable=broad-except
        say('ERROR', 'the update to %s failed: %s' % (release, ' '.join(str(exc).split())))
        if conn is not None:
            try:
                conn.rollback()
                conn.close()
            except Exception:  # pylint: disable=broad-except
                pass
        return 1
    finally:
        log.close()


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
