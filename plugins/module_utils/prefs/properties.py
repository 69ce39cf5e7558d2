# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``properties`` (Java) format of prefs_migrate: read as ISO-8859-1 with ``\\uXXXX`` escapes, as
``java.util.Properties`` does; only the value part of a changed line is rewritten.
"""

from __future__ import annotations

from ansible_collections.clinops.upgrade.plugins.module_utils.prefs.common import PrefsError
from ansible_collections.clinops.upgrade.plugins.module_utils.prefs.text import _eol_of, dominant_newline, split_lines


# --------------------------------------------------------------------------------------------------
# Java properties

def _unescape_properties(text, where):
    out = []
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c != '\\':
            out.append(c)
            i += 1
            continue
        i += 1
        if i >= n:
            break
        c = text[i]
        if c == 'u':
            code = text[i + 1:i + 5]
            if len(code) != 4 or not all(ch in '0123456789abcdefABCDEF' for ch in code):
                raise PrefsError('%s: malformed \\uxxxx escape %r' % (where, '\\u' + code))
            out.append(chr(int(code, 16)))
            i += 5
            continue
        out.append({'t': '\t', 'n': '\n', 'r': '\r', 'f': '\f'}.get(c, c))
        i += 1
    return ''.join(out)


def escape_properties(text, is_key=False):
    """Escape a key or value for an ISO-8859-1 properties file, as Properties.store does."""
    out = []
    for i, c in enumerate(text):
        code = ord(c)
        if c == '\\':
            out.append('\\\\')
        elif c == '\t':
            out.append('\\t')
        elif c == '\n':
            out.append('\\n')
        elif c == '\r':
            out.append('\\r')
        elif c == '\f':
            out.append('\\f')
        elif c == ' ' and (is_key or i == 0):
            out.append('\\ ')
        elif c in '=:#!' and (is_key or (i == 0 and c in '#!')):
            out.append('\\' + c)
        elif code < 0x20 or 0x7f <= code < 0xa0 or code > 0xff:
            if code > 0xffff:
                hi, lo = divmod(code - 0x10000, 0x400)
                out.append('\\u%04X\\u%04X' % (0xD800 + hi, 0xDC00 + lo))
            else:
                out.append('\\u%04X' % code)
        else:
            out.append(c)
    return ''.join(out)


class PropertiesDoc:
    """A Java properties file as editable entries; untouched entries keep their exact bytes."""

    fmt = 'properties'

    def __init__(self, data, name='properties'):
        self.name = name
        if b'\x00' in data:
            raise PrefsError('%s: not a properties file (NUL bytes)' % name)
        self.original = data
        text = data.decode('latin-1')
        self.newline = dominant_newline(text)
        self.entries = []  # dicts: raw, key, value, lead, head, value_raw, eol
        lines = split_lines(text)
        i = 0
        lineno = 0
        while i < len(lines):
            start = lineno + 1
            raw = lines[i]
            body, eol = _eol_of(raw)
            stripped = body.lstrip(' \t\f')
            i += 1
            lineno += 1
            if not stripped or stripped[0] in '#!':
                self.entries.append(dict(raw=raw, key=None))
                continue
            lead = body[:len(body) - len(stripped)]
            logical = stripped
            single = True
            while _odd_backslashes(logical) and i < len(lines):
                nxt_body, eol = _eol_of(lines[i])
                raw += lines[i]
                logical = logical[:-1] + nxt_body.lstrip(' \t\f')
                single = False
                i += 1
                lineno += 1
            if _odd_backslashes(logical):
                logical = logical[:-1]
            key_len, value_start = _split_key(logical)
            where = '%s line %d' % (name, start)
            key = _unescape_properties(logical[:key_len], where)
            value = _unescape_properties(logical[value_start:], where)
            self.entries.append(dict(raw=raw, key=key, value=value, lead=lead, head=logical[:value_start],
                                     value_raw=logical[value_start:] if single else None, eol=eol))
        self.changed = False

    def items(self):
        out = {}
        for entry in self.entries:
            if entry['key'] is not None:
                out[entry['key']] = entry['value']
        return out

    def raw_value(self, key):
        for entry in reversed(self.entries):
            if entry['key'] == key:
                return entry['value_raw']
        return None

    def _separator(self):
        for entry in self.entries:
            if entry['key'] is not None:
                return entry['head'][len(entry['head'].rstrip(' \t\f=:')):] or '='
        return '='

    def set(self, key, value, raw=None):
        if raw is None or _unescape_properties(raw, self.name) != value:
            raw = escape_properties(value)
        for entry in reversed(self.entries):
            if entry['key'] == key:
                entry['raw'] = entry['lead'] + entry['head'] + raw + entry['eol']
                entry['value'] = value
                entry['value_raw'] = raw
                self.changed = True
                return True
        return False

    def add(self, key, value, raw=None):
        if raw is None or _unescape_properties(raw, self.name) != value:
            raw = escape_properties(value)
        if self.entries and not self.entries[-1]['raw'].endswith(('\n', '\r')):
            self.entries[-1]['raw'] += self.newline
            if self.entries[-1].get('key') is not None:
                self.entries[-1]['eol'] = self.newline
        head = escape_properties(key, is_key=True) + self._separator()
        self.entries.append(dict(raw=head + raw + self.newline, key=key, value=value, lead='', head=head,
                                 value_raw=raw, eol=self.newline))
        self.changed = True
        return True

    def to_bytes(self):
        if not self.changed:
            return self.original
        return ''.join(e['raw'] for e in self.entries).encode('latin-1')


def _odd_backslashes(text):
    count = len(text) - len(text.rstrip('\\'))
    return count % 2 == 1


def _split_key(line):
    """java.util.Properties.load: where the key ends and the value starts in a logical line."""
    limit = len(line)
    key_len = 0
    value_start = limit
    has_sep = False
    backslash = False
    while key_len < limit:
        c = line[key_len]
        if c in '=:' and not backslash:
            value_start = key_len + 1
            has_sep = True
            break
        if c in ' \t\f' and not backslash:
            value_start = key_len + 1
            break
        backslash = (not backslash) if c == '\\' else False
        key_len += 1
    while value_start < limit:
        c = line[value_start]
        if c not in ' \t\f':
            if not has_sep and c in '=:':
                has_sep = True
            else:
                break
        value_start += 1
    return key_len, value_start
