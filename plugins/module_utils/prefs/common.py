# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every part of prefs_migrate shares: the formats, the secret-word lists, ``PrefsError`` and the argument spec."""

from __future__ import annotations

import re


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
