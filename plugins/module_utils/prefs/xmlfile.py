# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``xml`` format of prefs_migrate: attributes and leaf texts are keys; edits are made on the bytes at the
positions the parser reports, so comments, processing instructions, formatting and the declared encoding stay.
"""

from __future__ import annotations

import codecs
import re
import xml.parsers.expat

from ansible_collections.clinops.upgrade.plugins.module_utils.prefs.common import PrefsError


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
