# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Settings carry-over for the prefs_migrate module and its Windows action plugin.

The engines (patterns, formats, the three-way merge, diffs) are pure: they take bytes and paths as
strings and return bytes and reports, so the POSIX module (which reads the files itself) and the action
plugin (which fetches them from a Windows host) run exactly the same merge.

The last section holds the whole POSIX module (``Migration``), so that another module can run it in its
own process: ``run(AnsibleModule(**module_kwargs()))`` is all the module ``prefs_migrate`` does.

Formats and what an edit keeps:

* ``properties`` (Java): read as ISO-8859-1 with ``\\uXXXX`` escapes, as ``java.util.Properties`` does;
  only the value part of a changed line is rewritten, every other byte (comments, order, blank lines,
  CRLF or LF, the separator style) stays.  Values the file cannot hold in ISO-8859-1 become ``\\uXXXX``.
* ``ini``: sections and ``key = value`` / ``key: value`` lines, ``;`` and ``#`` comments, keys and
  sections compared case-insensitively as Windows does; encoding kept (UTF-8, UTF-8 or UTF-16 with a
  BOM, otherwise ISO-8859-1).  No multi-line values; a duplicate key or an unclosed ``[section`` is
  refused as ambiguous.
* ``json``: objects are walked, every non-object value (lists included) is one key ``a/b/c``.  An
  unchanged file is never rewritten; a changed one is dumped again with the indent, separators, line
  ending, final newline and encoding detected from the new file (JSON has no comments to keep).
* ``xml``: every attribute and every text of an element without child elements is a key, for example
  ``config/server/@port`` or ``map/entry[@key='cache.size']/@value``; an element is told apart from
  its siblings by its ``key``, ``name`` or ``id`` attribute, else by its position (``server[2]``).  Edits
  are made on the bytes at the positions the parser reports, so comments, processing instructions,
  formatting and the declared encoding stay.  UTF-16 and multi-byte encodings other than UTF-8 are
  refused; a site-added element is inserted only under a parent that has child elements in the new file.
"""

from __future__ import annotations

import codecs
import errno
import grp
import hashlib
import json
import os
import posixpath
import pwd
import re
import shutil
import stat
import tempfile
import time
import xml.parsers.expat

from ansible.module_utils.common.text.converters import to_native
from ansible_collections.clinops.upgrade.plugins.module_utils import paths as _paths

FORMATS = ('properties', 'ini', 'json', 'xml')
FORMAT_BY_EXTENSION = {
    '.properties': 'properties', '.prefs': 'properties', '.lax': 'properties',
    '.ini': 'ini', '.cfg': 'ini', '.conf': 'ini', '.inf': 'ini',
    '.json': 'json',
    '.xml': 'xml', '.config': 'xml', '.plist': 'xml',
}
MASK = '********'
DIFF_LIMIT = 64 * 1024
CHUNK = 1024 * 1024

SECRET_WORDS = ('password', 'passwd', 'passphrase', 'secret', 'token', 'credential', 'privatekey', 'apikey')
SECRET_TOKENS = frozenset(('key', 'pass', 'pwd', 'pw', 'pin', 'auth', 'secret', 'token', 'password'))
KEY_FILE_EXTENSIONS = ('.key', '.p12', '.pfx', '.jks', '.keystore', '.jceks', '.ppk', '.kdb')
PRIVATE_KEY_MARK = re.compile(br'-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----')


class PrefsError(Exception):
    """Bad input or a file that cannot be merged; the message names the file and the cause."""


def prefs_argument_spec():
    """The argument spec of prefs_migrate; the module and the action plugin validate with it."""
    return dict(
        src=dict(type='path', required=True),
        dest=dict(type='path', required=True),
        items=dict(type='list', elements='dict', required=True, options=dict(
            path=dict(type='str', required=True),
            mode=dict(type='str', default='copy', choices=['copy', 'keep', 'merge']),
            format=dict(type='str', default='auto', choices=['auto'] + list(FORMATS)),
            required=dict(type='bool', default=False),
        )),
        defaults=dict(type='path'),
        backup_dir=dict(type='path'),
    )


# --------------------------------------------------------------------------------------------------
# paths and item patterns

def check_item_path(pattern):
    """Return the normalised relative pattern (``/`` separated) or raise PrefsError."""
    if not isinstance(pattern, str) or not pattern.strip():
        raise PrefsError('an item path is empty')
    if '\x00' in pattern:
        raise PrefsError('item path %r contains a NUL byte' % pattern)
    if pattern.startswith(('/', '\\')) or re.match(r'^[A-Za-z]:', pattern):
        raise PrefsError('item path %r is absolute; item paths are relative to src and dest' % pattern)
    parts = [p for p in pattern.split('/') if p not in ('', '.')]
    if any(p == '..' for p in parts):
        raise PrefsError('item path %r leaves its root (..)' % pattern)
    if not parts:
        raise PrefsError('item path %r names the root itself; name the files or folders to carry' % pattern)
    return '/'.join(parts)


def is_inside(path, root):
    """True when the absolute ``path`` is ``root`` or below it (both normalised the same way)."""
    root = root.rstrip('/\\')
    if path.rstrip('/\\') == root:
        return True
    return path.startswith(root + '/') or path.startswith(root + '\\')


def has_magic(segment):
    return any(c in segment for c in '*?[')


def literal_prefix(pattern):
    """The leading segments of a pattern without wildcards: ``a/b/*.x`` -> ``a/b``."""
    prefix = []
    for part in pattern.split('/'):
        if has_magic(part):
            break
        prefix.append(part)
    return '/'.join(prefix)


def _segment_regex(segment):
    out = []
    i = 0
    n = len(segment)
    while i < n:
        c = segment[i]
        if c == '*':
            out.append('[^/]*')
        elif c == '?':
            out.append('[^/]')
        elif c == '[':
            j = i + 1
            if j < n and segment[j] == '!':
                j += 1
            if j < n and segment[j] == ']':
                j += 1
            j = segment.find(']', j)
            if j < 0:
                out.append('\\[')
            else:
                body = segment[i + 1:j]
                negate = body.startswith('!')
                if negate:
                    body = body[1:]
                body = body.replace('\\', '\\\\')
                out.append('[%s%s]' % ('^/' if negate else '', body))
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return ''.join(out)


def pattern_regex(pattern):
    """A compiled regex for relative ``/`` paths: ``*``, ``?``, ``[...]`` stay in a segment, ``**`` spans segments."""
    segments = pattern.split('/')
    regex = ''
    need_sep = False
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == '**':
            if last:
                regex += '(?:/[^/]+)*' if regex else '(?:[^/]+(?:/[^/]+)*)?'
            else:
                regex += ('/' if need_sep else '') + '(?:[^/]+/)*'
                need_sep = False
            continue
        regex += ('/' if need_sep else '') + _segment_regex(segment)
        need_sep = True
    return re.compile('^' + regex + '$', re.DOTALL)


def item_matches(regex, rel):
    """True when ``rel`` or one of its parent folders matches (a matched folder carries its whole tree)."""
    parts = rel.split('/')
    for i in range(len(parts), 0, -1):
        if regex.match('/'.join(parts[:i])):
            return True
    return False


def select_files(items, src_files, dest_files):
    """Decide which item handles each file.

    ``src_files`` and ``dest_files``: iterables of relative ``/`` paths of regular files.  The last item
    whose pattern matches a file handles it.  Returns ``(selection, missing)``: ``selection`` maps a
    relative path to its item (dict, in file order), ``missing`` lists the item paths that matched nothing.
    """
    src_files = sorted(src_files)
    dest_set = set(dest_files)
    selection = {}
    missing = []
    for item in items:
        regex = pattern_regex(item['path'])
        pool = src_files
        if item['mode'] == 'keep':
            pool = sorted(set(src_files) | dest_set)
        hits = [rel for rel in pool if item_matches(regex, rel)]
        if not hits:
            missing.append(item['path'])
        for rel in hits:
            selection[rel] = item
    return dict(sorted(selection.items())), missing


def resolve_format(item_format, rel):
    if item_format and item_format != 'auto':
        if item_format not in FORMATS:
            raise PrefsError('unknown format %r for %s (use one of %s)' % (item_format, rel, ', '.join(FORMATS)))
        return item_format
    ext = posixpath.splitext(rel.lower())[1]
    fmt = FORMAT_BY_EXTENSION.get(ext)
    if fmt is None:
        raise PrefsError('cannot tell the format of %s from its extension %r; give the item a format '
                         '(%s) or use mode copy' % (rel, ext, ', '.join(FORMATS)))
    return fmt


# --------------------------------------------------------------------------------------------------
# secrets

def _tokens(name):
    name = re.sub(r"@(key|name|id)=", ' ', name)
    name = re.sub(r'([a-z0-9])([A-Z])', r'\1 \2', name)
    return [t for t in re.split(r'[^A-Za-z0-9]+', name.lower()) if t]


def is_secret_key(name):
    """True for keys whose values must never be shown: password, secret, token, *key, pwd..."""
    if not name:
        return False
    compact = re.sub(r'[^a-z0-9]', '', re.sub(r"@(key|name|id)=", '', name.lower()))
    if any(word in compact for word in SECRET_WORDS):
        return True
    return any(tok in SECRET_TOKENS for tok in _tokens(name))


def is_key_file(rel, data=None):
    """True for private key material: key stores by extension, or PEM with a PRIVATE KEY block."""
    lower = rel.lower()
    base = posixpath.basename(lower)
    if lower.endswith(KEY_FILE_EXTENSIONS) or base.startswith(('id_rsa', 'id_ecdsa', 'id_ed25519', 'id_dsa')):
        return True
    if base in ('key.pem', 'privkey.pem', 'private.pem') or base.endswith(('-key.pem', '_key.pem', '.key.pem')):
        return True
    if data is not None and PRIVATE_KEY_MARK.search(data[:1024 * 1024]):
        return True
    return False


_LINE_KV = re.compile(r'^(\s*["\']?)([^=:\s"\'#;!][^=:"\']*?)(["\']?\s*[=:]\s*)(.*?)(\s*)$')
_JSON_PAIR = re.compile(r'("((?:[^"\\]|\\.)*)"\s*:\s*)("(?:[^"\\]|\\.)*"|[-+0-9.eE]+|true|false)')
_XML_ATTR = re.compile(r'([\w:.-]+)(\s*=\s*)(["\'])(.*?)\3')
_XML_ELEM = re.compile(r'(<([\w:.-]+)(?:\s[^<>]*)?>)([^<]*)(</\2\s*>)')
_XML_NAMED = re.compile(r'<[\w:.-]+\s[^<>]*?\b(?:key|name|id)\s*=\s*(["\'])(.*?)\1[^<>]*>')


def mask_text(text):
    """Hide values of secret-looking keys in a text of any supported format (diff output)."""
    out = []
    for line in text.splitlines(True):
        body = line.rstrip('\r\n')
        eol = line[len(body):]
        m = _LINE_KV.match(body)
        if m and not body.lstrip().startswith(('<', '{', '[')) and is_secret_key(m.group(2)):
            body = m.group(1) + m.group(2) + m.group(3) + MASK + m.group(5)
        else:
            body = _JSON_PAIR.sub(lambda mm: mm.group(1) + ('"%s"' % MASK if is_secret_key(mm.group(2)) else mm.group(3)), body)
            named = _XML_NAMED.search(body)
            if named and is_secret_key(named.group(2)):
                body = _XML_ATTR.sub(lambda mm: mm.group(0) if mm.group(1) in ('key', 'name', 'id') else
                                     mm.group(1) + mm.group(2) + mm.group(3) + MASK + mm.group(3), body)
            body = _XML_ATTR.sub(lambda mm: (mm.group(1) + mm.group(2) + mm.group(3) + MASK + mm.group(3))
                                 if is_secret_key(mm.group(1)) and mm.group(1) not in ('key', 'name', 'id') else mm.group(0), body)
            body = _XML_ELEM.sub(lambda mm: mm.group(1) + MASK + mm.group(4) if is_secret_key(mm.group(2)) else mm.group(0), body)
        out.append(body + eol)
    return ''.join(out)


def _display_text(data):
    if b'\x00' in data[:8192] and not data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return None
    try:
        return decode_text(data)[0]
    except (UnicodeDecodeError, PrefsError):
        return None


def file_diff(rel, before, after, key_file=False):
    """One diff entry for Ansible's diff callback with secrets masked.

    ``before``/``after``: the bytes, None for an absent file, or the size (int) of a file too large to read.
    """
    header = dict(before_header='%s (before)' % rel, after_header='%s (after)' % rel)

    def show(data):
        if data is None:
            return ''
        if isinstance(data, int):
            if key_file or is_key_file(rel):
                return '(private key file %s: %d bytes, content not shown)\n' % (rel, data)
            return '(%s: %d bytes, too large to show)\n' % (rel, data)
        if key_file or is_key_file(rel, data):
            return '(private key file %s: %d bytes, content not shown)\n' % (rel, len(data))
        if len(data) > DIFF_LIMIT:
            return '(%s: %d bytes, sha256 %s, too large to show)\n' % (rel, len(data), hashlib.sha256(data).hexdigest())
        text = _display_text(data)
        if text is None:
            return '(binary file %s: %d bytes, sha256 %s)\n' % (rel, len(data), hashlib.sha256(data).hexdigest())
        return mask_text(text)

    header['before'] = show(before)
    header['after'] = show(after)
    return header


# --------------------------------------------------------------------------------------------------
# text helpers

def decode_text(data):
    """Decode ``data``; return ``(text, encoding, bom)``: BOM, else strict UTF-8, else ISO-8859-1."""
    for bom, enc in ((codecs.BOM_UTF8, 'utf-8'), (codecs.BOM_UTF32_LE, 'utf-32-le'), (codecs.BOM_UTF32_BE, 'utf-32-be'),
                     (codecs.BOM_UTF16_LE, 'utf-16-le'), (codecs.BOM_UTF16_BE, 'utf-16-be')):
        if data.startswith(bom):
            return data[len(bom):].decode(enc), enc, bom
    try:
        return data.decode('utf-8'), 'utf-8', b''
    except UnicodeDecodeError:
        return data.decode('latin-1'), 'latin-1', b''


def dominant_newline(text):
    crlf = text.count('\r\n')
    lf = text.count('\n') - crlf
    cr = text.count('\r') - crlf
    if crlf >= lf and crlf >= cr and crlf:
        return '\r\n'
    if cr > lf:
        return '\r'
    return '\n'


_NATURAL_LINE = re.compile(r'[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+')


def split_lines(text):
    """Lines with their own terminators; joining them gives ``text`` back."""
    return _NATURAL_LINE.findall(text)


def _eol_of(line):
    body = line.rstrip('\r\n')
    return body, line[len(body):]


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


# --------------------------------------------------------------------------------------------------
# INI

_INI_SECTION = re.compile(r'^\s*\[([^\]]*)\]\s*(?:[;#].*)?$')
_INI_KEY = re.compile(r'^(\s*)([^=:\s;#\[][^=:]*?)(\s*[=:]\s*)(.*?)(\s*)$')


class IniDoc:
    """An INI file as lines; keys are ``section/key`` (``key`` before any section), case-insensitive."""

    fmt = 'ini'

    def __init__(self, data, name='ini'):
        self.name = name
        self.original = data
        text, self.encoding, self.bom = decode_text(data)
        if '\x00' in text:
            raise PrefsError('%s: not an INI file (NUL characters)' % name)
        self.newline = dominant_newline(text)
        self.lines = []  # dicts: raw, kind, section, key (display), ident, value, parts
        self.sections = {}  # ident of section -> display name
        section = ''
        seen = set()
        self.sections[''] = ''
        for lineno, raw in enumerate(split_lines(text), 1):
            body, eol = _eol_of(raw)
            stripped = body.strip()
            if not stripped or stripped[0] in ';#':
                self.lines.append(dict(raw=raw, kind='other', section=section.lower()))
                continue
            if stripped.startswith('['):
                m = _INI_SECTION.match(body)
                if not m:
                    raise PrefsError('%s line %d: malformed section header %r' % (name, lineno, stripped))
                section = m.group(1).strip()
                if section.lower() in self.sections and section.lower() != '':
                    raise PrefsError('%s line %d: section [%s] appears twice' % (name, lineno, section))
                self.sections[section.lower()] = section
                self.lines.append(dict(raw=raw, kind='section', section=section.lower()))
                continue
            m = _INI_KEY.match(body)
            if not m:
                self.lines.append(dict(raw=raw, kind='other', section=section.lower()))
                continue
            key = m.group(2)
            ident = (section.lower() + '/' + key.lower()) if section else key.lower()
            if ident in seen:
                raise PrefsError('%s line %d: key %r appears twice in [%s]' % (name, lineno, key, section))
            seen.add(ident)
            display = (self.sections[section.lower()] + '/' + key) if section else key
            self.lines.append(dict(raw=raw, kind='key', section=section.lower(), ident=ident, key=display,
                                   value=m.group(4), parts=[m.group(1), m.group(2), m.group(3), m.group(4), m.group(5), eol]))
        self.changed = False

    def items(self):
        return {line['ident']: line['value'] for line in self.lines if line['kind'] == 'key'}

    def display(self, ident):
        for line in self.lines:
            if line.get('ident') == ident:
                return line['key']
        return ident

    def _check(self, value):
        try:
            value.encode(self.encoding)
        except UnicodeEncodeError:
            raise PrefsError('%s: value %r cannot be written in the file\'s encoding %s' % (self.name, value, self.encoding))

    def set(self, ident, value, raw=None):
        self._check(value)
        for line in self.lines:
            if line.get('ident') == ident:
                parts = line['parts']
                parts[3] = value
                line['raw'] = ''.join(parts)
                line['value'] = value
                self.changed = True
                return True
        return False

    def add(self, ident, value, raw=None, display=None):
        self._check(value)
        display = display or ident
        section_ident, key = (ident.rsplit('/', 1) if '/' in ident else ('', ident))
        key = display.rsplit('/', 1)[-1] if '/' in display else display
        sep = next((line['parts'][2] for line in self.lines if line['kind'] == 'key'), '=')
        if self.lines and not self.lines[-1]['raw'].endswith(('\n', '\r')):
            self.lines[-1]['raw'] += self.newline
            if self.lines[-1]['kind'] == 'key':
                self.lines[-1]['parts'][5] = self.newline
        new_line = dict(raw=key + sep + value + self.newline, kind='key', section=section_ident, ident=ident,
                        key=display, value=value, parts=['', key, sep, value, '', self.newline])
        if section_ident in self.sections:
            last = None
            for index, line in enumerate(self.lines):
                if line['section'] == section_ident and line['kind'] in ('key', 'section'):
                    last = index
            if last is None:  # global keys, none yet: put them first
                self.lines.insert(0, new_line)
            else:
                self.lines.insert(last + 1, new_line)
        else:
            section_name = display.rsplit('/', 1)[0] if '/' in display else section_ident
            if self.lines and self.lines[-1]['raw'].strip():
                self.lines.append(dict(raw=self.newline, kind='other', section=self.lines[-1]['section']))
            self.lines.append(dict(raw='[%s]%s' % (section_name, self.newline), kind='section', section=section_ident))
            self.sections[section_ident] = section_name
            new_line['section'] = section_ident
            self.lines.append(new_line)
        self.changed = True
        return True

    def to_bytes(self):
        if not self.changed:
            return self.original
        return self.bom + ''.join(line['raw'] for line in self.lines).encode(self.encoding)


# --------------------------------------------------------------------------------------------------
# JSON

class JsonDoc:
    """A JSON object; keys are the paths of its non-object values, ``a/b/c``."""

    fmt = 'json'

    def __init__(self, data, name='json'):
        self.name = name
        self.original = data
        text, self.encoding, self.bom = decode_text(data)
        try:
            self.data = json.loads(text)
        except ValueError as exc:
            raise PrefsError('%s: malformed JSON: %s' % (name, exc))
        if not isinstance(self.data, dict):
            raise PrefsError('%s: the JSON top level is not an object; only objects can be merged' % name)
        self.newline = dominant_newline(text)
        self.final_newline = text.endswith(('\n', '\r'))
        self.indent = None
        m = re.search(r'[\r\n]([ \t]+)["}\]]', text)
        if m:
            indent = m.group(1)
            self.indent = '\t' if indent.startswith('\t') else len(indent)
        key_sep = ': ' if re.search(r'"\s*:\s', text) or not re.search(r'"\s*:', text) else ':'
        item_sep = ', ' if self.indent is None and re.search(r',[ \t]', text) else ','
        self.separators = (item_sep, key_sep)
        self.ensure_ascii = not any(ord(c) > 127 for c in text)
        self.changed = False

    def items(self):
        out = {}

        def walk(node, prefix):
            for key, value in node.items():
                path = prefix + (key,)
                if isinstance(value, dict):
                    walk(value, path)
                else:
                    out['/'.join(_json_escape(p) for p in path)] = value
        walk(self.data, ())
        return out

    def _path(self, key):
        return [p.replace('~1', '/').replace('~0', '~') for p in key.split('/')]

    def set(self, key, value, raw=None):
        node = self.data
        parts = self._path(key)
        for part in parts[:-1]:
            node = node.get(part)
            if not isinstance(node, dict):
                return False
        if parts[-1] not in node or isinstance(node[parts[-1]], dict):
            return False
        node[parts[-1]] = value
        self.changed = True
        return True

    def add(self, key, value, raw=None):
        node = self.data
        parts = self._path(key)
        for part in parts[:-1]:
            if part not in node:
                node[part] = {}
            node = node[part]
            if not isinstance(node, dict):
                return False
        if parts[-1] in node:
            return False
        node[parts[-1]] = value
        self.changed = True
        return True

    def to_bytes(self):
        if not self.changed:
            return self.original
        text = json.dumps(self.data, indent=self.indent, separators=self.separators, ensure_ascii=self.ensure_ascii)
        if self.newline != '\n':
            text = text.replace('\n', self.newline)
        if self.final_newline:
            text += self.newline
        return self.bom + text.encode(self.encoding)


def _json_escape(name):
    """RFC 6901 escaping of one key in a path."""
    return name.replace('~', '~0').replace('/', '~1')


# --------------------------------------------------------------------------------------------------
# XML

_XML_DECL_ENCODING = re.compile(br'^\s*<\?xml[^>]*?encoding\s*=\s*["\']([A-Za-z0-9._-]+)["\']')
_EXPAT_NATIVE = ('utf-8', 'utf8', 'us-ascii', 'ascii', 'iso-8859-1', 'latin-1', 'latin1')
_IDENT_ATTRS = ('key', 'name', 'id')


class XmlDoc:
    """An XML file edited in place at the byte positions expat reports."""

    fmt = 'xml'

    def __init__(self, data, name='xml'):
        self.name = name
        self.original = data
        if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or (len(data) > 1 and data[1:2] == b'\x00'):
            raise PrefsError('%s: UTF-16 XML cannot be merged in place; use mode copy or keep' % name)
        m = _XML_DECL_ENCODING.match(data)
        self.encoding = codecs.lookup(m.group(1).decode('ascii')).name if m else 'utf-8'
        try:
            single_byte = len(bytes(range(256)).decode(self.encoding, 'replace')) == 256
        except LookupError:
            raise PrefsError('%s: unknown XML encoding %r' % (name, m.group(1)))
        if self.encoding not in ('utf-8',) and not single_byte:
            raise PrefsError('%s: XML in %s cannot be merged in place; use mode copy or keep' % (name, self.encoding))
        self.parse_as = 'utf-8' if self.encoding == 'utf-8' else 'iso-8859-1'
        self.elements = []
        self._parse(data)
        self.edits = []
        self.changed = False

    def _text(self, value):
        if self.parse_as == 'iso-8859-1' and self.encoding not in ('latin-1', 'iso8859-1'):
            return value.encode('latin-1').decode(self.encoding)
        return value

    def _parse(self, data):
        parser = xml.parsers.expat.ParserCreate(encoding=self.parse_as)
        stack = []
        elements = self.elements

        def start(tag, attrs):
            pos = parser.CurrentByteIndex
            element = dict(tag=self._text(tag), attrs={self._text(k): self._text(v) for k, v in attrs.items()}, start=pos,
                           parent=stack[-1] if stack else None, children=[], text=[])
            element['start_end'] = _tag_end(data, pos)
            if stack:
                elements[stack[-1]]['children'].append(len(elements))
            stack.append(len(elements))
            elements.append(element)

        def end(tag):
            pos = parser.CurrentByteIndex
            element = elements[stack.pop()]
            if pos == element['start_end'] and data[pos - 2:pos] == b'/>':
                element['end'] = element['close_end'] = pos
                element['empty'] = True
            else:
                element['end'] = pos
                element['close_end'] = _tag_end(data, pos)
                element['empty'] = False

        def chars(text):
            if stack:
                elements[stack[-1]]['text'].append(self._text(text))

        parser.StartElementHandler = start
        parser.EndElementHandler = end
        parser.CharacterDataHandler = chars
        parser.buffer_text = True
        try:
            parser.Parse(data, True)
        except xml.parsers.expat.ExpatError as exc:
            raise PrefsError('%s: malformed XML: %s' % (self.name, exc))
        self.paths = {}
        counts = {}
        for index, element in enumerate(elements):
            siblings = elements[element['parent']]['children'] if element['parent'] is not None else [0]
            ident = next((a for a in _IDENT_ATTRS if a in element['attrs']), None)
            if ident:
                segment = "%s[@%s='%s']" % (element['tag'], ident, element['attrs'][ident])
            else:
                same = [s for s in siblings if elements[s]['tag'] == element['tag'] and
                        not any(a in elements[s]['attrs'] for a in _IDENT_ATTRS)]
                segment = element['tag'] if len(same) == 1 else '%s[%d]' % (element['tag'], same.index(index) + 1)
            prefix = self.paths[element['parent']] + '/' if element['parent'] is not None else ''
            path = prefix + segment
            counts[path] = counts.get(path, 0) + 1
            if counts[path] > 1:
                path = '%s{%d}' % (path, counts[path])
            element['ident'] = ident
            self.paths[index] = path
        self.by_path = {path: index for index, path in self.paths.items()}

    def items(self):
        out = {}
        for index, element in enumerate(self.elements):
            path = self.paths[index]
            for attr, value in element['attrs'].items():
                if attr != element['ident']:
                    out[path + '/@' + attr] = value
            text = ''.join(element['text'])
            if not element['children'] and (text.strip() or len(element['attrs']) <= (1 if element['ident'] else 0)):
                out[path] = text
        return out

    def _encode(self, text, attr=False):
        text = text.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')
        if attr:
            text = text.replace('"', '&quot;').replace('\r', '&#13;').replace('\n', '&#10;').replace('\t', '&#9;')
        return text.encode(self.encoding, 'xmlcharrefreplace')

    def _locate(self, key):
        if '/@' in key:
            path, attr = key.rsplit('/@', 1)
        else:
            path, attr = key, None
        index = self.by_path.get(path)
        return index, attr

    def set(self, key, value, raw=None):
        index, attr = self._locate(key)
        if index is None:
            return False
        element = self.elements[index]
        if attr is not None:
            if attr not in element['attrs']:
                return False
            tag = self.original[element['start']:element['start_end']]
            enc_attr = attr.encode(self.encoding)
            for m in re.finditer(br'(\s)(' + re.escape(enc_attr) + br')(\s*=\s*)(["\'])(.*?)\4', tag, re.DOTALL):
                quote = m.group(4)
                new = self._encode(value, attr=True)
                if quote == b"'":
                    new = new.replace(b'&quot;', b'"').replace(b"'", b'&apos;')
                self.edits.append((element['start'] + m.start(5), element['start'] + m.end(5), new))
                break
            else:
                return False
        else:
            if element['children']:
                return False
            if element['empty']:
                body = b'>' + self._encode(value) + b'</' + element['tag'].encode(self.encoding) + b'>'
                self.edits.append((element['start_end'] - 2, element['start_end'], body))
            else:
                self.edits.append((element['start_end'], element['end'], self._encode(value)))
        self.changed = True
        return True

    def add(self, key, value, raw=None, source=None):
        """Add a site-added attribute on an existing element, or an element copied from ``source``."""
        index, attr = self._locate(key)
        if index is not None and attr is not None:
            element = self.elements[index]
            at = element['start_end'] - (2 if element['empty'] else 1)
            while self.original[at - 1:at] in (b' ', b'\t', b'\r', b'\n') and at > element['start']:
                at -= 1
            self.edits.append((at, at, b' ' + attr.encode(self.encoding) + b'="' + self._encode(value, attr=True) + b'"'))
            self.changed = True
            return True
        if source is None:
            return False
        path = key.rsplit('/@', 1)[0] if '/@' in key else key
        # the highest element of the path that the new file lacks, and its parent that it has
        parts = _split_xml_path(path)
        for depth in range(1, len(parts) + 1):
            sub = '/'.join(parts[:depth])
            if sub not in self.by_path:
                parent_path = '/'.join(parts[:depth - 1])
                break
        else:
            return False
        if not parent_path or parent_path not in self.by_path or sub not in source.by_path:
            return False
        if any(edit[3] == sub for edit in self.edits if len(edit) > 3):
            return True  # this element is already being inserted
        parent = self.elements[self.by_path[parent_path]]
        if not parent['children']:
            return False
        last = self.elements[parent['children'][-1]]
        old = source.elements[source.by_path[sub]]
        chunk = source.original[old['start']:old['close_end']].decode(source.encoding)
        ws = re.search(rb'([ \t]*)$', self.original[:last['start']]).group(1)
        eol = b'\r\n' if b'\r\n' in self.original else b'\n'
        body = eol + ws + chunk.encode(self.encoding, 'xmlcharrefreplace')
        self.edits.append((last['close_end'], last['close_end'], body, sub))
        self.changed = True
        return True

    def to_bytes(self):
        if not self.changed:
            return self.original
        data = self.original
        for edit in sorted(self.edits, key=lambda e: (e[0], e[1]), reverse=True):
            data = data[:edit[0]] + edit[2] + data[edit[1]:]
        return data


def _split_xml_path(path):
    parts = []
    depth = 0
    current = ''
    quote = None
    for c in path:
        if quote:
            current += c
            if c == quote:
                quote = None
            continue
        if c in '\'"' and depth:
            quote = c
        elif c == '[':
            depth += 1
        elif c == ']':
            depth -= 1
        if c == '/' and not depth:
            parts.append(current)
            current = ''
        else:
            current += c
    parts.append(current)
    return parts


def _tag_end(data, pos):
    """The byte after the ``>`` that closes the tag starting at ``pos`` (quotes respected)."""
    quote = None
    i = pos
    n = len(data)
    while i < n:
        c = data[i:i + 1]
        if quote:
            if c == quote:
                quote = None
        elif c in (b'"', b"'"):
            quote = c
        elif c == b'>':
            return i + 1
        i += 1
    return n


DOC_CLASSES = dict(properties=PropertiesDoc, ini=IniDoc, json=JsonDoc, xml=XmlDoc)


def parse(fmt, data, name):
    if fmt not in DOC_CLASSES:
        raise PrefsError('unknown format %r for %s (use one of %s)' % (fmt, name, ', '.join(FORMATS)))
    return DOC_CLASSES[fmt](data, name)


# --------------------------------------------------------------------------------------------------
# the three-way merge

def merge(fmt, old_data, new_data, defaults_data=None, name='file'):
    """Merge the site's old file into the new release's file.

    A key whose old value differs from the old release's default (``defaults_data``; without it every old
    value counts as changed) is customised and its old value is taken.  Keys the new release added keep
    their new defaults.  A key the old file has and the new one lacks is reported dropped, unless the
    defaults show the site added it (then it is carried over).

    Returns ``(result_bytes, report)``; ``report`` has ``keys`` (taken from old), ``added`` (new in this
    release), ``dropped`` and ``changed``.  Raises PrefsError for malformed input.
    """
    old = parse(fmt, old_data, name + ' (old)')
    new = parse(fmt, new_data, name + ' (new)')
    default = parse(fmt, defaults_data, name + ' (defaults)') if defaults_data is not None else None
    old_items = old.items()
    new_items = new.items()
    default_items = default.items() if default is not None else None
    taken = []
    dropped = []

    def differ(a, b):
        if fmt == 'json':
            return json.dumps(a, sort_keys=True) != json.dumps(b, sort_keys=True)
        return a != b

    for key, value in old_items.items():
        customised = default_items is None or key not in default_items or differ(default_items[key], value)
        raw = old.raw_value(key) if fmt == 'properties' else None
        if key in new_items:
            if customised:
                taken.append(key)
                if differ(new_items[key], value) and not new.set(key, value, raw=raw):
                    taken.pop()
                    dropped.append(key)
        elif default_items is not None and key not in default_items:
            if fmt == 'xml':
                done = new.add(key, value, source=old)
            elif fmt == 'ini':
                done = new.add(key, value, display=old.display(key))
            else:
                done = new.add(key, value, raw=raw)
            (taken if done else dropped).append(key)
        else:
            dropped.append(key)
    result = new.to_bytes()
    if result != new_data:
        parse(fmt, result, name + ' (merged)')  # never write what we could not read back

    def show(keys, doc):
        return [doc.display(k) if fmt == 'ini' else k for k in keys]
    report = dict(
        keys=show(taken, old),
        added=show([k for k in new_items if k not in old_items], new),
        dropped=show(dropped, old),
        changed=result != new_data,
    )
    return result, report


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


def norm_rel(path):
    return path.replace(os.sep, '/')


# --------------------------------------------------------------------------------------------------
# the module prefs_migrate on a POSIX host: plan, then carry out as one transaction

MERGE_LIMIT = 64 * 1024 * 1024
MANIFEST = '.prefs_migrate-manifest.json'


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        while True:
            block = handle.read(CHUNK)
            if not block:
                break
            digest.update(block)
    return digest.hexdigest()


class Tree:
    """Finds the regular files and symlinks an item matches under one root, refusing what may not be touched.

    Every path is checked component by component (``paths.resolve_under``): a symlink anywhere on the way that
    leads outside the root is refused, naming it.  A symlink that stays inside is recorded in ``links`` to be
    recreated as a symlink, never followed (not even into a folder).
    """

    def __init__(self, root, label):
        self.root = root
        self.real = os.path.realpath(root)
        self.label = label
        self.files = {}  # rel -> os.stat_result of the regular file
        self.links = {}  # rel -> the text of a symlink that stays inside the root

    def _link(self, path, rel):
        """Record the symlink ``rel`` (already checked to stay inside) or refuse it."""
        target = os.readlink(path)
        if not _paths.link_target_inside(rel, target):
            # the text climbs out or is absolute, though it lands inside: recreate it relative, by where it lands
            real = os.path.realpath(path)
            target = os.path.relpath(real, os.path.join(self.real, os.path.dirname(rel))).replace(os.sep, '/')
        self.links[rel] = target

    def scan(self, pattern):
        """Add the files and inside symlinks matching ``pattern`` to ``self.files`` and ``self.links``."""
        regex = pattern_regex(pattern)
        segments = pattern.split('/')
        depth_limit = None if '**' in segments else len(segments)
        start = literal_prefix(pattern)
        try:
            start_path = _paths.resolve_under(self.root, start, self.label, follow_last=False) if start else self.real
        except _paths.PathEscape as exc:
            raise PrefsError(str(exc)) from None
        if not os.path.lexists(start_path):
            return
        visited = set()
        stack = [(start, start_path)]
        while stack:
            rel, path = stack.pop()
            st = os.lstat(path)
            matched = bool(rel) and item_matches(regex, rel)
            if stat.S_ISLNK(st.st_mode):
                real = os.path.realpath(path)
                if not is_inside(real, self.real):
                    raise PrefsError('%s %s is a symlink to %s, which leads outside %s (to %s); refused, nothing was written'
                                     % (self.label, rel, os.readlink(path), self.root, real))
                if matched:
                    self._link(path, rel)
                    continue
                if rel != start or not os.path.isdir(real):
                    continue
                # the item names a path through this inside folder link (conf/*.properties with conf -> settings)
                path, st = real, os.stat(real)
            if stat.S_ISDIR(st.st_mode):
                depth = len(rel.split('/')) if rel else 0
                if not matched and depth_limit is not None and depth >= depth_limit:
                    continue
                key = (st.st_dev, st.st_ino)
                if key in visited:
                    continue
                visited.add(key)
                with os.scandir(path) as entries:
                    for entry in entries:
                        stack.append(((rel + '/' + entry.name) if rel else entry.name, entry.path))
            elif not matched:
                continue
            elif stat.S_ISREG(st.st_mode):
                self.files[rel] = st
            else:
                raise PrefsError('%s %s is a special file (%s); refused' % (self.label, rel, _kind(st.st_mode)))


def _kind(mode):
    for test, name in ((stat.S_ISFIFO, 'fifo'), (stat.S_ISSOCK, 'socket'), (stat.S_ISCHR, 'character device'),
                       (stat.S_ISBLK, 'block device'), (stat.S_ISDIR, 'directory')):
        if test(mode):
            return name
    return 'unknown type'


def _read(root, rel, limit, label):
    """The bytes of ``root/rel``, opened without following a symlink out of ``root`` (checked again right here)."""
    try:
        data = _paths.read_under(root, rel, limit, label)
    except _paths.PathEscape as exc:
        raise PrefsError(str(exc)) from None
    if len(data) > limit:
        raise PrefsError('%s is more than %d bytes, too large to merge; use mode copy' % (rel, limit))
    return data


class Migration:
    """Plans the carry-over without touching anything, then carries it out as one transaction."""

    def __init__(self, module):
        self.module = module
        params = module.params
        self.src = os.path.abspath(params['src'])
        self.dest = os.path.abspath(params['dest'])
        self.defaults = os.path.abspath(params['defaults']) if params['defaults'] else None
        self.backup_dir = os.path.abspath(params['backup_dir']) if params['backup_dir'] else None
        self.items = []
        self.actions = []  # dicts: kind (copy|write|attrs), rel, target, exists, ...
        self.result = dict(changed=False, copied=[], merged=[], kept=[], dropped_keys={}, missing=[], backup_dir=None)
        self.diffs = []
        self.warnings = []

    # ---------------------------------------------------------------- checks and plan
    def check(self):
        for option in ('src', 'dest', 'defaults', 'backup_dir'):
            try:
                _paths.check_option_path(self.module.params[option], option)
            except _paths.PathEscape as exc:
                raise PrefsError(str(exc)) from None
        for label, path in (('src', self.src), ('dest', self.dest)):
            if not os.path.exists(path):
                raise PrefsError('%s %s does not exist' % (label, path))
            if not os.path.isdir(path):
                raise PrefsError('%s %s is not a directory' % (label, path))
        src_real, dest_real = os.path.realpath(self.src), os.path.realpath(self.dest)
        if src_real == dest_real:
            raise PrefsError('src and dest are the same folder (%s)' % src_real)
        if is_inside(dest_real, src_real):
            raise PrefsError('dest %s lies inside src %s; refused' % (self.dest, self.src))
        if is_inside(src_real, dest_real):
            raise PrefsError('src %s lies inside dest %s; refused' % (self.src, self.dest))
        if self.defaults is not None and not os.path.isdir(self.defaults):
            raise PrefsError('defaults %s is not an existing directory' % self.defaults)
        if self.backup_dir is not None:
            backup_real = os.path.realpath(self.backup_dir)
            for label, real in (('src', src_real), ('dest', dest_real)):
                if is_inside(backup_real, real):
                    raise PrefsError('backup_dir %s lies inside %s; choose a folder outside both roots' % (self.backup_dir, label))
            if os.path.exists(self.backup_dir) and not os.path.isdir(self.backup_dir):
                raise PrefsError('backup_dir %s exists and is not a directory' % self.backup_dir)
        for raw in self.module.params['items']:
            item = dict(raw)
            item['path'] = check_item_path(item['path'])
            self.items.append(item)

    @staticmethod
    def _checked(root, rel, label, follow_last=True):
        """``paths.resolve_under`` with its refusal as a PrefsError."""
        if not rel:
            return os.path.realpath(root)
        try:
            return _paths.resolve_under(root, rel, label, follow_last=follow_last)
        except _paths.PathEscape as exc:
            raise PrefsError(str(exc)) from None

    def plan(self):
        self.check()
        src_tree = Tree(self.src, 'src')
        dest_tree = Tree(self.dest, 'dest')
        for item in self.items:
            src_tree.scan(item['path'])
            if item['mode'] == 'keep':
                dest_tree.scan(item['path'])
        selection, missing = select_files(self.items, list(src_tree.files) + list(src_tree.links),
                                          list(dest_tree.files) + list(dest_tree.links))
        self.result['missing'] = missing
        required_missing = [i['path'] for i in self.items if i['required'] and i['path'] in missing]
        if required_missing:
            raise PrefsError('required item(s) not found in src %s: %s' % (self.src, ', '.join(required_missing)))
        dest_real = os.path.realpath(self.dest)
        for rel, item in selection.items():
            if item['mode'] == 'keep':
                if os.path.lexists(os.path.join(self.dest, rel)):
                    self.result['kept'].append(rel)
                continue
            target = os.path.join(self.dest, rel)
            if rel in src_tree.links:
                if item['mode'] == 'merge' and os.path.isfile(target) and not os.path.islink(target):
                    # a merge reads the old values through the inside link; the new file stays a file
                    self._plan_merge(rel, item, target, self._dest_stat(rel, target, dest_real))
                    continue
                self._plan_link(rel, src_tree.links[rel], target, dest_real)
                continue
            dest_st = self._dest_stat(rel, target, dest_real)
            src_path = os.path.join(self.src, rel)
            src_st = src_tree.files[rel]
            if item['mode'] == 'merge' and dest_st is not None:
                self._plan_merge(rel, item, target, dest_st)
            else:
                if item['mode'] == 'merge':
                    resolve_format(item['format'], rel)
                self._plan_copy(rel, src_path, src_st, target, dest_st)
        if self.backup_dir is not None:
            # an existing backup_dir is written into: no folder in it on the way may be a symlink leading out of it
            for action in self.actions:
                if action['exists']:
                    self._checked(self.backup_dir, posixpath.dirname(action['rel']), 'backup_dir')

    def _dest_stat(self, rel, target, dest_real):
        """Stat of the target in dest (None when absent); refuses escapes, folders and special files there."""
        self._checked(self.dest, posixpath.dirname(rel), 'dest')
        if not os.path.lexists(target):
            return None
        real = self._checked(self.dest, rel, 'dest')
        if not is_inside(real, dest_real):
            raise PrefsError('dest %s leads outside %s (to %s); refused' % (rel, self.dest, real))
        st = os.stat(real)
        if not stat.S_ISREG(st.st_mode):
            raise PrefsError('dest %s is a %s where src has a file; refused' % (rel, _kind(st.st_mode)))
        return st

    def _plan_link(self, rel, text, target, dest_real):
        """Recreate the inside symlink ``rel`` of src as a symlink in dest (never followed); refuse one leading out there."""
        self._checked(self.dest, posixpath.dirname(rel), 'dest')
        where = os.path.realpath(os.path.join(os.path.realpath(os.path.dirname(target)), text))
        if not is_inside(where, dest_real):
            raise PrefsError('src %s is a symlink to %s, which would lead outside dest %s there (to %s); refused'
                             % (rel, text, self.dest, where))
        dest_st = None
        if os.path.lexists(target):
            dest_st = os.lstat(target)
            if stat.S_ISLNK(dest_st.st_mode) and os.readlink(target) == text:
                return
            if stat.S_ISDIR(dest_st.st_mode):
                raise PrefsError('dest %s is a directory where src has a symlink (to %s); refused' % (rel, text))
        self.actions.append(dict(kind='link', rel=rel, target=target, text=text, exists=dest_st is not None, dest_st=dest_st))
        self.result['copied'].append(rel)
        if self.module._diff:
            before = None
            if dest_st is not None:
                before = (('symlink to %s\n' % os.readlink(target)).encode() if stat.S_ISLNK(dest_st.st_mode)
                          else self._diff_bytes(target, dest_st))
            self.diffs.append(file_diff(rel, before, ('symlink to %s\n' % text).encode()))

    def _same_content(self, src_path, src_st, target, dest_st):
        if src_st.st_size != dest_st.st_size:
            return False
        if src_st.st_mtime_ns == dest_st.st_mtime_ns:
            return True
        return sha256_file(src_path) == sha256_file(target)

    def _plan_copy(self, rel, src_path, src_st, target, dest_st):
        key = is_key_file(rel)
        if dest_st is not None and self._same_content(src_path, src_st, target, dest_st):
            if (stat.S_IMODE(src_st.st_mode), src_st.st_uid, src_st.st_gid) == (stat.S_IMODE(dest_st.st_mode), dest_st.st_uid, dest_st.st_gid):
                return
            self.actions.append(dict(kind='attrs', rel=rel, target=target, src_st=src_st, dest_st=dest_st, exists=True))
            self.result['copied'].append(rel)
            return
        if key and stat.S_IMODE(src_st.st_mode) & 0o077:
            self.warnings.append('private key %s has mode %04o in src; its mode is kept' % (rel, stat.S_IMODE(src_st.st_mode)))
        self.actions.append(dict(kind='copy', rel=rel, target=target, src=src_path, src_st=src_st,
                                 exists=dest_st is not None, dest_st=dest_st))
        self.result['copied'].append(rel)
        if self.module._diff:
            self.diffs.append(file_diff(rel, self._diff_bytes(target, dest_st), self._diff_bytes(src_path, src_st), key_file=key))

    def _plan_merge(self, rel, item, target, dest_st):
        fmt = resolve_format(item['format'], rel)
        old = _read(self.src, rel, MERGE_LIMIT, 'src')
        new = _read(self.dest, rel, MERGE_LIMIT, 'dest')
        defaults = None
        if self.defaults is not None:
            default_path = self._checked(self.defaults, rel, 'defaults')
            if os.path.isfile(default_path):
                defaults = _read(self.defaults, rel, MERGE_LIMIT, 'defaults')
        merged, report = merge(fmt, old, new, defaults, rel)
        entry = dict(path=rel, format=fmt, keys=report['keys'], added=report['added'], changed=report['changed'])
        self.result['merged'].append(entry)
        if report['dropped']:
            self.result['dropped_keys'][rel] = report['dropped']
        if report['changed']:
            self.actions.append(dict(kind='write', rel=rel, target=target, content=merged, dest_st=dest_st, exists=True))
            if self.module._diff:
                self.diffs.append(file_diff(rel, new, merged))

    @staticmethod
    def _diff_bytes(path, st):
        if st is None:
            return None
        if st.st_size > DIFF_LIMIT:
            return st.st_size
        with open(path, 'rb') as handle:
            return handle.read()

    # ---------------------------------------------------------------- carry out
    def _backup_root(self):
        if self.backup_dir is not None:
            return self.backup_dir
        stamp = time.strftime('%Y%m%dT%H%M%S')
        base = '%s.prefs_backup-%s' % (self.dest.rstrip(os.sep), stamp)
        path = base
        counter = 1
        while os.path.lexists(path):
            path = '%s-%d' % (base, counter)
            counter += 1
        return path

    def _chown(self, path, uid, gid):
        try:
            os.chown(path, uid, gid, follow_symlinks=False)
        except PermissionError:
            if (uid, gid) != (os.geteuid(), os.getegid()):
                msg = 'cannot set the owner of the files (not root); they belong to %s' % _owner_name(os.geteuid(), os.getegid())
                if msg not in self.warnings:
                    self.warnings.append(msg)

    def _stage_copy(self, action):
        st = action['src_st']
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(action['target']), prefix='.%s.' % os.path.basename(action['target']),
                                   suffix='.prefs_migrate')
        action['tmp'] = tmp
        digest = hashlib.sha256()
        try:
            src_fd = _paths.open_under(self.src, action['rel'], label='src')
        except _paths.PathEscape as exc:
            os.close(fd)
            raise PrefsError(str(exc)) from None
        with os.fdopen(fd, 'wb') as out, os.fdopen(src_fd, 'rb') as handle:
            while True:
                block = handle.read(CHUNK)
                if not block:
                    break
                digest.update(block)
                out.write(block)
        if sha256_file(tmp) != digest.hexdigest():
            raise PrefsError('%s: the copy does not match its source (sha256); nothing was replaced' % action['rel'])
        self._chown(tmp, st.st_uid, st.st_gid)
        os.chmod(tmp, stat.S_IMODE(st.st_mode))
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))

    def _stage_write(self, action):
        st = action['dest_st']
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(action['target']), prefix='.%s.' % os.path.basename(action['target']),
                                   suffix='.prefs_migrate')
        action['tmp'] = tmp
        with os.fdopen(fd, 'wb') as out:
            out.write(action['content'])
        if sha256_file(tmp) != hashlib.sha256(action['content']).hexdigest():
            raise PrefsError('%s: the merged file does not read back as written (sha256)' % action['rel'])
        self._chown(tmp, st.st_uid, st.st_gid)
        os.chmod(tmp, stat.S_IMODE(st.st_mode))

    def _stage_link(self, action):
        folder, base = os.path.split(action['target'])
        for attempt in range(100):
            tmp = os.path.join(folder, '.%s.%d.%d.prefs_migrate' % (base, os.getpid(), attempt))
            try:
                os.symlink(action['text'], tmp)
            except FileExistsError:
                continue
            action['tmp'] = tmp
            return
        raise PrefsError('%s: cannot find a free temporary name for the symlink' % action['rel'])

    def _make_parents(self, target, created):
        # checked again right before writing: no folder on the way may have become a symlink leading out
        self._checked(self.dest, posixpath.dirname(norm_rel(os.path.relpath(target, self.dest))), 'dest')
        parent = os.path.dirname(target)
        missing = []
        while not os.path.isdir(parent):
            missing.append(parent)
            parent = os.path.dirname(parent)
        for folder in reversed(missing):
            os.mkdir(folder, 0o700)
            created.append(folder)
            rel = os.path.relpath(folder, self.dest)
            src_folder = os.path.join(self.src, rel)
            if os.path.isdir(src_folder):
                sst = os.stat(src_folder)
                self._chown(folder, sst.st_uid, sst.st_gid)
                os.chmod(folder, stat.S_IMODE(sst.st_mode))
            else:
                os.chmod(folder, 0o755)

    def _backup(self, action, backup_root):
        self._checked(backup_root, posixpath.dirname(action['rel']), 'backup_dir')
        backup = os.path.join(backup_root, action['rel'])
        os.makedirs(os.path.dirname(backup), exist_ok=True)
        target = action['target']  # the entry itself: a symlink is kept as a symlink, never followed
        if action['kind'] != 'attrs':
            try:
                os.link(target, backup, follow_symlinks=False)
                action['backup'] = backup
                return
            except OSError:
                pass
        shutil.copy2(target, backup, follow_symlinks=False)
        st = action['dest_st']
        self._chown(backup, st.st_uid, st.st_gid)
        action['backup'] = backup

    def run(self):
        if not self.actions:
            return
        self.result['changed'] = True
        if self.module.check_mode:
            return
        backup_root = self._backup_root()
        made_backup_root = not os.path.isdir(backup_root)
        created_dirs = []
        committed = []
        try:
            for action in self.actions:
                if action['kind'] == 'attrs':
                    continue
                self._make_parents(action['target'], created_dirs)
                if action['kind'] == 'copy':
                    self._stage_copy(action)
                elif action['kind'] == 'link':
                    self._stage_link(action)
                else:
                    self._stage_write(action)
            os.makedirs(backup_root, exist_ok=True)
            for action in self.actions:
                if action['exists']:
                    self._backup(action, backup_root)
            self._write_manifest(backup_root, created_dirs)
            for action in self.actions:
                if action['kind'] == 'attrs':
                    st = action['src_st']
                    committed.append(action)
                    self._chown(action['target'], st.st_uid, st.st_gid)
                    os.chmod(action['target'], stat.S_IMODE(st.st_mode))
                    os.utime(action['target'], ns=(st.st_atime_ns, st.st_mtime_ns))
                else:
                    os.replace(action['tmp'], action['target'])
                    action.pop('tmp')
                    committed.append(action)
        except Exception as exc:  # pylint: disable=broad-except
            problems = self._rollback(committed, created_dirs, backup_root if made_backup_root else None)
            msg = 'prefs_migrate failed part-way and restored dest as it was: %s' % to_native(exc)
            if problems:
                msg = 'prefs_migrate failed part-way (%s) and could not restore everything: %s; the replaced files are in %s' % (
                    to_native(exc), '; '.join(problems), backup_root)
            raise PrefsError(msg)
        self.result['backup_dir'] = backup_root

    def _write_manifest(self, backup_root, created_dirs):
        manifest = dict(src=self.src, dest=self.dest, created_at=time.strftime('%Y-%m-%dT%H:%M:%S%z'),
                        replaced=[a['rel'] for a in self.actions if a['exists'] and a['kind'] != 'attrs'],
                        attributes_changed=[a['rel'] for a in self.actions if a['kind'] == 'attrs'],
                        created=[a['rel'] for a in self.actions if not a['exists']],
                        created_dirs=[os.path.relpath(d, self.dest) for d in created_dirs])
        path = os.path.join(backup_root, MANIFEST)
        with open(path, 'w', encoding='utf-8') as handle:
            json.dump(manifest, handle, indent=2)
            handle.write('\n')

    def _rollback(self, committed, created_dirs, backup_root):
        problems = []
        for action in reversed(committed):
            try:
                if action['kind'] == 'attrs':
                    st = action['dest_st']
                    self._chown(action['target'], st.st_uid, st.st_gid)
                    os.chmod(action['target'], stat.S_IMODE(st.st_mode))
                    os.utime(action['target'], ns=(st.st_atime_ns, st.st_mtime_ns))
                elif action['exists']:
                    restore = action['target'] + '.prefs_migrate-restore'
                    try:
                        os.link(action['backup'], restore, follow_symlinks=False)
                    except OSError:
                        shutil.copy2(action['backup'], restore, follow_symlinks=False)
                        st = action['dest_st']
                        self._chown(restore, st.st_uid, st.st_gid)
                    os.replace(restore, action['target'])
                else:
                    os.unlink(action['target'])
            except OSError as exc:
                problems.append('%s: %s' % (action['rel'], to_native(exc)))
        for action in self.actions:
            tmp = action.get('tmp')
            if tmp and os.path.lexists(tmp):
                try:
                    os.unlink(tmp)
                except OSError as exc:
                    problems.append('%s: %s' % (tmp, to_native(exc)))
        for folder in reversed(created_dirs):
            try:
                os.rmdir(folder)
            except OSError as exc:
                if exc.errno not in (errno.ENOENT,):
                    problems.append('%s: %s' % (folder, to_native(exc)))
        if backup_root and not problems and os.path.isdir(backup_root):
            shutil.rmtree(backup_root, ignore_errors=True)
        return problems


def _owner_name(uid, gid):
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    try:
        group = grp.getgrgid(gid).gr_name
    except KeyError:
        group = str(gid)
    return '%s:%s' % (user, group)


def module_kwargs():
    """The keyword arguments of ``AnsibleModule`` for prefs_migrate (a new dict on every call)."""
    return dict(argument_spec=prefs_argument_spec(), supports_check_mode=True)


def run(module):
    """The whole behaviour of the module prefs_migrate; ends in ``module.exit_json`` or ``module.fail_json``.

    Uses only ``params``, ``check_mode``, ``_diff``, ``warn``, ``exit_json`` and ``fail_json`` of ``module``
    and keeps no state between calls, so another module may call it in its own process with an adapter
    whose ``exit_json``/``fail_json`` raise.
    """
    migration = Migration(module)
    try:
        migration.plan()
        migration.run()
    except (PrefsError, _paths.PathEscape) as exc:
        module.fail_json(msg=to_native(exc), **migration.result)
        return
    except (OSError, IOError) as exc:
        module.fail_json(msg='prefs_migrate: %s' % to_native(exc), **migration.result)
        return
    for warning in migration.warnings:
        module.warn(warning)
    result = migration.result
    if module._diff:
        result['diff'] = migration.diffs
    module.exit_json(**result)
