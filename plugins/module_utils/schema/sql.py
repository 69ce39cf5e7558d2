# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Split a migration file into statements, and read its header directives (schema_update only).

What the splitter understands, per dialect (``postgresql``, ``mysql``, ``sqlite``, ``firebird``):

- ``'...'`` strings with ``''`` escapes; backslash escapes in MySQL strings and PostgreSQL ``E'...'``;
  ``"..."`` identifiers (strings on MySQL), MySQL/SQLite backquotes, SQLite ``[...]``;
- ``-- ...`` line comments, ``/* ... */`` block comments (nested on PostgreSQL), MySQL ``# ...``;
- PostgreSQL dollar quoting (``$$ ... $$``, ``$body$ ... $body$``), so function bodies stay whole;
- Firebird ``SET TERM ^ ;`` and MySQL ``DELIMITER //`` (client commands: they change the terminator
  and are not sent to the server);
- routine bodies without a changed terminator: a ``CREATE``/``ALTER``/``RECREATE`` of a procedure,
  function, trigger, package or event, Firebird ``EXECUTE BLOCK`` and MariaDB ``BEGIN NOT ATOMIC``
  run to the ``END`` that closes their outermost ``BEGIN`` (``CASE ... END`` and ``END CASE`` are
  counted, ``END IF``/``END LOOP``/``END WHILE``/``END REPEAT``/``END FOR`` are not); Firebird's
  ``DECLARE VARIABLE ...;`` lines between ``AS`` and ``BEGIN`` stay in the routine.

Limits: psql and isql meta-commands other than SET TERM (``\\connect``, ``INPUT``) are refused; a
MySQL routine whose body is a single statement without BEGIN ends at its first ``;`` (use DELIMITER).
"""

from __future__ import annotations

import re

DIALECTS = ('postgresql', 'mysql', 'sqlite', 'firebird')
PHASES = ('pre', 'offline', 'post')

_WORD_RE = re.compile(r'[A-Za-z_][A-Za-z0-9_$]*')
_ROUTINE_OBJECTS = frozenset(('PROCEDURE', 'FUNCTION', 'TRIGGER', 'PACKAGE', 'EVENT'))
_NOT_CLOSERS = frozenset(('IF', 'LOOP', 'WHILE', 'REPEAT', 'FOR'))
_HEADER_RE = re.compile(r'^--\s*(phase)\s*:\s*(\S*)\s*$', re.IGNORECASE)


class SqlSplitError(ValueError):
    """The text cannot be split (an unterminated string or comment, an unsupported client command)."""


class Statement:
    """One statement: its SQL text (without the terminator) and the line it starts on (1-based)."""

    __slots__ = ('sql', 'line')

    def __init__(self, sql, line):
        self.sql = sql
        self.line = line

    @property
    def verb(self):
        """The statement's first word in upper case (``CREATE``, ``COMMIT``...)."""
        match = _WORD_RE.search(_strip_leading_comments(self.sql))
        return match.group(0).upper() if match else ''

    def __eq__(self, other):
        return isinstance(other, Statement) and (self.sql, self.line) == (other.sql, other.line)

    def __hash__(self):
        return hash((self.sql, self.line))

    def __repr__(self):
        return 'Statement(%r, line=%d)' % (self.sql, self.line)


def _strip_leading_comments(sql):
    text = sql.lstrip()
    while text.startswith('--') or text.startswith('/*'):
        if text.startswith('--'):
            end = text.find('\n')
            text = '' if end < 0 else text[end + 1:].lstrip()
        else:
            end = text.find('*/')
            text = '' if end < 0 else text[end + 2:].lstrip()
    return text


def parse_header(text):
    """The directives in the file's leading ``--`` comment lines, as a dict.

    Recognised: ``-- phase: pre|offline|post`` (default ``offline``).  Other comment lines are plain
    comments; the header ends at the first line that is neither blank nor a ``--`` comment.
    Raises ValueError for a recognised directive with a bad or repeated value.
    """
    header = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if not line.startswith('--'):
            break
        match = _HEADER_RE.match(line)
        if not match:
            continue
        key, value = match.group(1).lower(), match.group(2).lower()
        if key in header:
            raise ValueError('line %d: %s is declared twice in the header' % (number, key))
        if value not in PHASES:
            raise ValueError('line %d: phase must be one of %s, not %r' % (number, ', '.join(PHASES), match.group(2)))
        header[key] = value
    header.setdefault('phase', 'offline')
    return header


class _Splitter:
    """A single pass over the text; ``i`` is the read position."""

    def __init__(self, text, dialect):
        if dialect not in DIALECTS:
            raise ValueError('unknown SQL dialect %r' % dialect)
        self.text = text
        self.dialect = dialect
        self.n = len(text)
        self.term = ';'
        self.out = []

    def line_of(self, pos):
        return self.text.count('\n', 0, pos) + 1

    def fail(self, pos, what):
        raise SqlSplitError('line %d: %s' % (self.line_of(pos), what))

    # -- skipping quoted text and comments: each returns the position after it -----------------
    def skip_line_comment(self, i):
        end = self.text.find('\n', i)
        return self.n if end < 0 else end + 1

    def skip_block_comment(self, i):
        depth, j = 1, i + 2
        nested = self.dialect == 'postgresql'
        while j < self.n:
            if self.text.startswith('*/', j):
                depth -= 1
                j += 2
                if depth == 0:
                    return j
            elif nested and self.text.startswith('/*', j):
                depth += 1
                j += 2
            else:
                j += 1
        return self.fail(i, 'unterminated /* comment')

    def skip_quoted(self, i, quote, backslash):
        j = i + 1
        while j < self.n:
            char = self.text[j]
            if backslash and char == '\\':
                j += 2
                continue
            if char == quote:
                if j + 1 < self.n and self.text[j + 1] == quote:
                    j += 2
                    continue
                return j + 1
            j += 1
        return self.fail(i, 'unterminated %s quote' % quote)

    def skip_dollar(self, i):
        """Skip a PostgreSQL dollar-quoted string at ``i``, or return None when ``$`` starts none."""
        if i > 0 and (self.text[i - 1].isalnum() or self.text[i - 1] in '_$'):
            return None
        match = re.compile(r'\$([A-Za-z_][A-Za-z0-9_]*)?\$').match(self.text, i)
        if not match:
            return None
        tag = match.group(0)
        end = self.text.find(tag, match.end())
        if end < 0:
            return self.fail(i, 'unterminated dollar-quoted string %s' % tag)
        return end + len(tag)

    def is_comment_start(self, i):
        text = self.text
        if text.startswith('--', i):
            if self.dialect == 'mysql':  # MySQL needs white space after --
                return i + 2 >= self.n or text[i + 2] in ' \t\r\n'
            return True
        return text.startswith('/*', i) or (self.dialect == 'mysql' and text[i] == '#')

    def skip_comment(self, i):
        if self.text.startswith('/*', i):
            return self.skip_block_comment(i)
        return self.skip_line_comment(i)

    def skip_token(self, i):
        """If a string, identifier quote or comment starts at ``i``, the position after it, else None."""
        text, char = self.text, self.text[i]
        if self.is_comment_start(i):
            return self.skip_comment(i)
        if char == "'":
            backslash = self.dialect == 'mysql' or (
                self.dialect == 'postgresql' and i > 0 and text[i - 1] in 'eE'
                and (i < 2 or not (text[i - 2].isalnum() or text[i - 2] == '_')))
            return self.skip_quoted(i, "'", backslash)
        if char == '"':
            return self.skip_quoted(i, '"', self.dialect == 'mysql')
        if char == '`' and self.dialect in ('mysql', 'sqlite'):
            return self.skip_quoted(i, '`', False)
        if char == '[' and self.dialect == 'sqlite':
            end = text.find(']', i)
            return self.n if end < 0 else end + 1
        if char == '$' and self.dialect == 'postgresql':
            return self.skip_dollar(i)
        return None

    # -- statements ---------------------------------------------------------------------------
    def skip_space_and_comments(self, i):
        while i < self.n:
            if self.text[i].isspace():
                i += 1
            elif self.is_comment_start(i):
                i = self.skip_comment(i)
            else:
                break
        return i

    def client_command(self, i):
        """Handle SET TERM / DELIMITER / meta-commands at a statement start; the new position or None."""
        text = self.text
        if self.dialect == 'firebird':
            match = re.compile(r'SET\s+TERM\s+(\S+?)\s*' + re.escape(self.term), re.IGNORECASE).match(text, i)
            if match:
                self.term = match.group(1)
                return match.end()
        if self.dialect == 'mysql':
            match = re.compile(r'DELIMITER[ \t]+(\S+)[^\n]*(\n|$)', re.IGNORECASE).match(text, i)
            if match:
                self.term = match.group(1)
                return match.end()
        if text[i] == '\\' and self.dialect in ('postgresql', 'mysql'):
            end = text.find('\n', i)
            self.fail(i, 'client meta-command %r is not SQL and is not supported' % text[i:end if end > 0 else self.n].strip())
        return None

    def next_word(self, i):
        """The next word after ``i`` (upper case) and the position after it; ('', i) when none."""
        j = self.skip_space_and_comments(i)
        match = _WORD_RE.match(self.text, j)
        return (match.group(0).upper(), match.end()) if match else ('', i)

    def split(self):
        i = 0
        while True:
            i = self.skip_space_and_comments(i)
            if i >= self.n:
                return self.out
            after = self.client_command(i)
            if after is not None:
                i = after
                continue
            i = self.statement(i)

    def statement(self, start):
        """Read one statement from ``start``; append it; return the position after its terminator."""
        text, term = self.text, self.term
        words = []          # first words of the statement, upper case
        routine = False     # a routine whose body may hold the terminator
        saw_as = False      # Firebird: AS seen, declarations may follow
        depth = 0
        entered = False
        i = start
        while i < self.n:
            if text.startswith(term, i):
                if not routine or term != ';':
                    break
                if entered and depth == 0:
                    break
                if not entered and not (self.dialect == 'firebird' and saw_as):
                    break
                i += len(term)
                continue
            after = self.skip_token(i)
            if after is not None:
                i = after
                continue
            match = _WORD_RE.match(text, i) if (text[i].isalpha() or text[i] == '_') else None
            if match and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] in '_$')):
                word = match.group(0).upper()
                i = match.end()
                if len(words) < 8:
                    words.append(word)
                    if len(words) == 1 and word == 'BEGIN' and self.next_word(i)[0] == 'NOT':
                        routine, entered, depth = True, True, 1
                        continue
                    if words[0] in ('CREATE', 'ALTER', 'RECREATE') and word in _ROUTINE_OBJECTS:
                        routine = True
                    if words[:2] == ['EXECUTE', 'BLOCK']:
                        routine = True
                if routine:
                    if word == 'AS' and depth == 0:
                        saw_as = True
                    elif word in ('BEGIN', 'CASE'):
                        depth += 1
                        entered = True
                    elif word == 'END' and depth > 0:
                        following, after_following = self.next_word(i)
                        if following not in _NOT_CLOSERS:
                            depth -= 1
                        if following in _NOT_CLOSERS or following == 'CASE':
                            i = after_following  # END IF / END CASE: the second word opens nothing
                continue
            i += 1
        sql = text[start:i].rstrip()
        if sql:
            self.out.append(Statement(sql, self.line_of(start)))
        return i + len(term)


def split_statements(text, dialect):
    """The statements of ``text`` in ``dialect``, as a list of :class:`Statement`.

    Raises :class:`SqlSplitError` (with the line) for an unterminated string, comment or dollar quote.
    """
    if text.startswith('\ufeff'):
        text = text[1:]
    return _Splitter(text, dialect).split()


TRANSACTION_VERBS = frozenset(('BEGIN', 'START', 'COMMIT', 'ROLLBACK', 'END', 'SAVEPOINT', 'RELEASE'))


def is_commit(statement):
    """True for ``COMMIT`` or ``COMMIT WORK`` (Firebird scripts' commit points)."""
    return re.match(r'^COMMIT(\s+WORK)?\s*$', _strip_leading_comments(statement.sql), re.IGNORECASE) is not None


def is_transaction_control(statement):
    """True for BEGIN/START TRANSACTION/COMMIT/ROLLBACK/SAVEPOINT/RELEASE/END statements (not BEGIN NOT ATOMIC)."""
    verb = statement.verb
    if verb not in TRANSACTION_VERBS:
        return False
    body = _strip_leading_comments(statement.sql)
    if verb == 'BEGIN' and re.match(r'^BEGIN\s+NOT\s+ATOMIC', body, re.IGNORECASE):
        return False
    if verb == 'START' and not re.match(r'^START\s+TRANSACTION', body, re.IGNORECASE):
        return False
    return True
