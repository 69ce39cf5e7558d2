# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Secrets in prefs_migrate's reports and diffs: secret key names, key files, masked text and the file diff."""

from __future__ import annotations

import codecs
import hashlib
import posixpath
import re

from ansible_collections.clinops.upgrade.plugins.module_utils.prefs.common import (
    DIFF_LIMIT,
    KEY_FILE_EXTENSIONS,
    MASK,
    PRIVATE_KEY_MARK,
    PrefsError,
    SECRET_TOKENS,
    SECRET_WORDS,
)
from ansible_collections.clinops.upgrade.plugins.module_utils.prefs.text import decode_text


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
