# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Text helpers of the prefs formats: decoding with the encoding kept, the dominant newline, lines with their ends."""

from __future__ import annotations

import codecs
import re


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
