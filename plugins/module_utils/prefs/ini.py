# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``ini`` format of prefs_migrate: sections and ``key = value`` lines, compared case-insensitively as Windows does."""

from __future__ import annotations

import re

from ansible_collections.clinops.upgrade.plugins.module_utils.prefs.common import PrefsError
from ansible_collections.clinops.upgrade.plugins.module_utils.prefs.text import _eol_of, decode_text, dominant_newline, split_lines


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
