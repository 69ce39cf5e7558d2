"""A ``sqlcmd`` double for the SQL Server paths of db_backup, schema_update and service_stop_ordered.

No SQL Server can run here.  :func:`install` writes this file as an executable ``sqlcmd`` into a folder that the
test puts first in ``PATH``; the modules then run for real (through ansible-playbook) against it.  The double:

* accepts only options the real ``sqlcmd`` (mssql-tools18 / go-sqlcmd) documents, with their argument counts,
  and answers any other with sqlcmd's own ``Unknown Option`` error and exit code 1; it refuses ``-P`` too (real
  sqlcmd has it, but a password on the command line is what the modules must never do), and a ``-Q`` query when
  ``-x`` (no scripting variables) is missing;
* needs ``-S``, and ``-E`` or ``-U`` with the password in ``SQLCMDPASSWORD`` (as real sqlcmd, which would prompt);
* keeps SQL Server's state in ``sqlcmd-state.json`` beside itself (databases with their tables and row counts,
  answers for free queries, the product version) and logs every call to ``sqlcmd-calls.jsonl`` (argv, the
  statement, whether SQLCMDPASSWORD was set; never the password);
* understands the statements the collection sends: ``BACKUP DATABASE`` (writes a backup file holding the database),
  ``RESTORE VERIFYONLY`` / ``FILELISTONLY`` / ``DATABASE`` (``REPLACE`` needed over an existing database), the
  SINGLE_USER/MULTI_USER rollback batch, ``DROP DATABASE``, the size, version and row-count queries; anything else
  is looked up in the state's ``queries`` (exact text after ``SET NOCOUNT ON; USE [db];``: a list of lines, or
  ``{"sequence": [[lines], ...]}`` answered one per call), else ``Msg 208`` (invalid object name), as SQL Server would.
"""
import json
import os
import re
import shutil
import sys

# Options of sqlcmd (ODBC and go-sqlcmd) that take a value, and those that do not.
WITH_VALUE = set('-a -c -d -f -h -H -i -K -l -m -o -P -q -Q -s -S -t -U -v -V -w -z -Z -F -T'.split())
FLAGS = set('-A -b -C -D -e -E -g -G -I -j -k -k1 -k2 -L -Lc -M -N -p -p1 -r -r0 -r1 -R -u -W -x -X -X1 -y -Y -?'.split())
MARK = 'MSSQL-DOUBLE-BACKUP 1\n'
NAME = r'\[((?:[^\]]|\]\])*)\]'
TEXT = r"N'((?:[^']|'')*)'"


def install(folder, state=None):
    """Write the double as ``folder/sqlcmd`` (with this interpreter) and its initial state; return the path."""
    os.makedirs(folder, exist_ok=True)
    target = os.path.join(folder, 'sqlcmd')
    with open(__file__, encoding='utf-8') as source, open(target, 'w', encoding='utf-8') as handle:
        handle.write('#!%s\n' % sys.executable)
        shutil.copyfileobj(source, handle)
    os.chmod(target, 0o755)
    write_state(folder, state or {'product_version': '16.0.4135.4', 'databases': {}, 'queries': {}})
    return target


def state_path(folder):
    return os.path.join(folder, 'sqlcmd-state.json')


def read_state(folder):
    with open(state_path(folder), encoding='utf-8') as handle:
        return json.load(handle)


def write_state(folder, state):
    with open(state_path(folder), 'w', encoding='utf-8') as handle:
        json.dump(state, handle, indent=1, sort_keys=True)


def calls(folder):
    """Every call logged so far: dicts with argv, statement and password_in_env."""
    try:
        with open(os.path.join(folder, 'sqlcmd-calls.jsonl'), encoding='utf-8') as handle:
            return [json.loads(line) for line in handle if line.strip()]
    except FileNotFoundError:
        return []


def unname(text):
    return text.replace(']]', ']')


def untext(text):
    return text.replace("''", "'")


class SqlError(Exception):
    def __init__(self, number, text):
        super().__init__('Msg %d, Level 16, State 1, Server double, Line 1\n%s' % (number, text))


def parse_args(argv):
    """``{option: value}``; SystemExit(1) with sqlcmd's message for an option it does not have."""
    opts = {}
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg in WITH_VALUE:
            if index + 1 >= len(argv):
                fail("Sqlcmd: '%s': Missing argument. Enter '-?' for help." % arg)
            opts[arg] = argv[index + 1]
            index += 2
        elif arg in FLAGS:
            opts[arg] = True
            index += 1
        else:
            fail("Sqlcmd: '%s': Unknown Option. Enter '-?' for help." % arg)
    return opts


def fail(message):
    sys.stdout.write(message + '\n')
    sys.exit(1)


def backup_database(state, name, path):
    if name not in state['databases']:
        raise SqlError(911, "Database '%s' does not exist. Make sure that the name is entered correctly." % name)
    with open(path, 'w', encoding='utf-8') as handle:
        handle.write(MARK + json.dumps({'database': name, 'content': state['databases'][name]}, sort_keys=True))
    return ['Processed 1 pages for database \'%s\'.' % name, 'BACKUP DATABASE successfully processed 1 pages.']


def read_backup(path):
    try:
        with open(path, encoding='utf-8') as handle:
            data = handle.read()
    except OSError:
        raise SqlError(3201, "Cannot open backup device '%s'. Operating system error 2." % path) from None
    if not data.startswith(MARK):
        raise SqlError(3241, "The media family on device '%s' is incorrectly formed." % path)
    try:
        return json.loads(data[len(MARK):])
    except ValueError:
        raise SqlError(3241, "The media family on device '%s' is incorrectly formed." % path) from None


def restore_database(state, name, path, options):
    backup = read_backup(path)
    if name in state['databases'] and 'REPLACE' not in options:
        raise SqlError(3159, 'The tail of the log for the database "%s" has not been backed up.' % name)
    if 'CHECKSUM' not in options:
        raise SqlError(50000, 'double: the collection always restores WITH CHECKSUM')
    state['databases'][name] = json.loads(json.dumps(backup['content']))
    state.setdefault('events', []).append('restored %s from %s' % (name, path))
    return ['RESTORE DATABASE successfully processed 1 pages.']


def answer(state, statement):
    """The rows (lines) sqlcmd would print for ``statement``; SqlError like SQL Server's."""
    text = statement
    database = 'master'
    if text.startswith('SET NOCOUNT ON; '):
        text = text[len('SET NOCOUNT ON; '):]
    match = re.match(r'USE %s; ' % NAME, text)
    if match:
        database = unname(match.group(1))
        if database not in state['databases']:
            raise SqlError(911, "Database '%s' does not exist." % database)
        text = text[match.end():]
    if "SERVERPROPERTY('ProductVersion')" in text:
        return [state['product_version']]
    match = re.search(r'FROM sys\.master_files WHERE database_id = DB_ID\(%s\)' % TEXT, text)
    if match:
        db = state['databases'].get(untext(match.group(1)))
        return [str(db.get('size', 1048576))] if db else ['NULL']
    if 'FROM sys.tables t' in text and 'sys.partitions' in text:
        tables = state['databases'][database].get('tables', {})
        return ['%s|%d' % (table, rows) for table, rows in sorted(tables.items())]
    match = re.match(r'BACKUP DATABASE %s TO DISK = %s WITH (.*)$' % (NAME, TEXT), text)
    if match:
        return backup_database(state, unname(match.group(1)), untext(match.group(2)))
    match = re.match(r'RESTORE VERIFYONLY FROM DISK = %s WITH CHECKSUM$' % TEXT, text)
    if match:
        read_backup(untext(match.group(1)))
        return ['The backup set on file 1 is valid.']
    match = re.match(r'RESTORE FILELISTONLY FROM DISK = %s$' % TEXT, text)
    if match:
        backup = read_backup(untext(match.group(1)))
        name = backup['database']
        return ['%s|D:\\data\\%s.mdf|D|PRIMARY' % (name, name), '%s_log|D:\\log\\%s_log.ldf|L|NULL' % (name, name)]
    match = re.match(r'RESTORE DATABASE %s FROM DISK = %s WITH (.*)$' % (NAME, TEXT), text)
    if match:
        return restore_database(state, unname(match.group(1)), untext(match.group(2)), match.group(3))
    match = re.match(r'IF DB_ID\(%s\) IS NOT NULL BEGIN ALTER DATABASE %s SET SINGLE_USER WITH ROLLBACK IMMEDIATE; '
                     r'DROP DATABASE %s; END$' % (TEXT, NAME, NAME), text)
    if match:
        state['databases'].pop(untext(match.group(1)), None)
        return []
    match = re.match(r'IF DB_ID\(%s\) IS NOT NULL ALTER DATABASE %s SET SINGLE_USER WITH ROLLBACK IMMEDIATE; '
                     r'BEGIN TRY (RESTORE DATABASE .*); END TRY BEGIN CATCH .* END CATCH; ALTER DATABASE %s SET MULTI_USER$'
                     % (TEXT, NAME, NAME), text)
    if match:
        name = untext(match.group(1))
        events = state.setdefault('events', [])
        if name in state['databases']:
            events.append('single_user %s' % name)
        inner = re.match(r'RESTORE DATABASE %s FROM DISK = %s WITH (.*)$' % (NAME, TEXT), match.group(3))
        try:
            return restore_database(state, unname(inner.group(1)), untext(inner.group(2)), inner.group(3))
        finally:
            events.append('multi_user %s' % name)
    if text in state.get('queries', {}):
        known = state['queries'][text]
        if isinstance(known, dict):  # {"sequence": [[lines], ...]}: one answer per call, the last one repeats
            return known['sequence'].pop(0) if len(known['sequence']) > 1 else known['sequence'][0]
        return known
    raise SqlError(208, "Invalid object name in '%s'." % text[:80])


def main(argv):
    folder = os.path.dirname(os.path.abspath(__file__))
    opts = parse_args(argv)
    if '-?' in opts:
        sys.stdout.write('Microsoft (R) SQL Server Command Line Tool\nVersion 18.2.0001.1 Linux (clinops test double)\n')
        sys.exit(0)
    if '-P' in opts:
        fail('double: -P puts the password on the command line, where every user of the host can read it; refused')
    if '-S' not in opts:
        fail('Sqlcmd: Error: Microsoft ODBC Driver 18 for SQL Server : Login timeout expired (no -S).')
    if ('-E' in opts) == ('-U' in opts):
        fail('double: give exactly one of -E (Windows authentication) and -U (SQL login)')
    if '-U' in opts and 'SQLCMDPASSWORD' not in os.environ:
        fail("Sqlcmd: Error: Microsoft ODBC Driver 18 for SQL Server : Login failed for user '%s'." % opts['-U'])
    statement = opts.get('-Q')
    if statement is not None and '-x' not in opts:
        fail('double: -Q without -x would substitute $(...) scripting variables in the statement')
    with open(os.path.join(folder, 'sqlcmd-calls.jsonl'), 'a', encoding='utf-8') as log:
        log.write(json.dumps({'argv': argv, 'statement': statement, 'password_in_env': 'SQLCMDPASSWORD' in os.environ,
                              'sqlcmdini_in_env': 'SQLCMDINI' in os.environ}) + '\n')
    if statement is None:
        fail('double: only -Q is supported')
    state = read_state(folder)
    try:
        lines = answer(state, statement)
    except SqlError as exc:
        sys.stdout.write('%s\n' % exc)
        write_state(folder, state)
        sys.exit(1 if '-b' in opts else 0)
    write_state(folder, state)
    for line in lines:
        sys.stdout.write('%s\n' % line)
    sys.exit(0)


if __name__ == '__main__':
    main(sys.argv[1:])
