# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``json`` format of prefs_migrate: every non-object value is one key ``a/b/c``; the layout of the new file is kept."""

from __future__ import annotations

import json
import re

from ansible_collections.clinops.upgrade.plugins.module_utils.prefs.common import PrefsError
from ansible_collections.clinops.upgrade.plugins.module_utils.prefs.text import decode_text, dominant_newline


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
