# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fetch a release from where the vendor publishes it: ftp://, ftps://, https://, http:// or file://.

The behaviour of the module artifact_fetch, also run in-process by the engine's ``stage`` step (upgrade_cutover)
before anything stops. Downloads into ``<dest>/<name>.part`` and resumes a partial file (FTP ``REST``, HTTP ``Range``,
a seek for ``file://``); the finished file's sha256 is compared with the one given or read from a checksum file at the
source; only a file whose sha256 matches is renamed to ``<dest>/<name>``. Certificates are validated (``ftps://``,
``https://``) unless the caller turns it off. Standard library only (ftplib, urllib, ssl, hashlib).
"""

from __future__ import annotations

import ftplib
import hashlib
import os
import re
import shutil
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request

SCHEMES = ('ftp', 'ftps', 'https', 'http', 'file')
SHA256 = re.compile(r'^[0-9a-fA-F]{64}$')
CHUNK = 1024 * 1024


class FetchError(Exception):
    """The download could not be done or is not the release it should be; the message names the URL."""


def argument_spec():
    return dict(
        url=dict(type='str', required=True),
        dest=dict(type='path', required=True),
        name=dict(type='str'),
        checksum=dict(type='str'),
        checksum_url=dict(type='str'),
        url_username=dict(type='str'),
        url_password=dict(type='str', no_log=True),
        validate_certs=dict(type='bool', default=True),
        ca_path=dict(type='path'),
        timeout=dict(type='int', default=30),
        resume=dict(type='bool', default=True),
    )


def module_kwargs():
    """The keyword arguments of ``AnsibleModule`` for artifact_fetch (a new dict on every call)."""
    return dict(argument_spec=argument_spec(), supports_check_mode=True, required_one_of=[('checksum', 'checksum_url')],
                mutually_exclusive=[('checksum', 'checksum_url')])


def public_url(url):
    """``url`` without any user or password part, for messages."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.hostname or ''
    if parts.port:
        netloc += ':%d' % parts.port
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, ''))


def url_problems(url, what='url'):
    parts = urllib.parse.urlsplit(url or '')
    problems = []
    if parts.scheme not in SCHEMES:
        problems.append('%s %s: the scheme must be one of %s' % (what, public_url(url or ''), ', '.join(SCHEMES)))
        return problems
    if parts.username or parts.password:
        problems.append('%s %s: give the user and password in url_username/url_password (kept out of logs), not in the URL'
                        % (what, public_url(url)))
    if parts.scheme != 'file' and not parts.hostname:
        problems.append('%s %s has no host' % (what, public_url(url)))
    if not parts.path or parts.path.endswith('/'):
        problems.append('%s %s does not name a file' % (what, public_url(url)))
    return problems


def problems(p):
    """Every input problem, before anything is downloaded or written."""
    errors = url_problems(p.get('url'))
    if p.get('checksum_url'):
        errors.extend(url_problems(p['checksum_url'], 'checksum_url'))
    checksum = p.get('checksum')
    if checksum is not None and not SHA256.match(checksum.split(':', 1)[1] if checksum.lower().startswith('sha256:') else checksum):
        errors.append('checksum must be the sha256 (64 hex digits, optionally "sha256:" before it), not %r' % checksum)
    name = p.get('name')
    if name is not None and (not name or '/' in name or name in ('.', '..') or '\0' in name):
        errors.append('name must be a plain file name, not %r' % name)
    if not p.get('name') and p.get('url'):
        base = os.path.basename(urllib.parse.unquote(urllib.parse.urlsplit(p['url']).path))
        if base in ('', '.', '..'):
            errors.append('url %s names no file; give name' % public_url(p['url']))
    if p.get('timeout') is not None and p['timeout'] < 1:
        errors.append('timeout must be 1 second or more')
    return errors


def file_name(p):
    return p.get('name') or os.path.basename(urllib.parse.unquote(urllib.parse.urlsplit(p['url']).path))


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(CHUNK), b''):
            digest.update(block)
    return digest.hexdigest()


def parse_checksum_file(text, name):
    """The sha256 for ``name`` in a checksum file: ``<hex>`` alone, or ``sha256sum`` lines ``<hex>  [*]<name>``."""
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith('#')]
    for line in lines:
        fields = line.split()
        if len(fields) >= 2 and SHA256.match(fields[0]) and os.path.basename(fields[-1].lstrip('*')) == name:
            return fields[0].lower()
    if len(lines) == 1 and SHA256.match(lines[0].split()[0]):
        return lines[0].split()[0].lower()
    return None


class Source:
    """One URL: its size when known, and its bytes from an offset on, written into a handle."""

    def __init__(self, p):
        self.p = p
        self.timeout = p.get('timeout') or 30

    def ssl_context(self):
        if not self.p.get('validate_certs', True):
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        return ssl.create_default_context(cafile=self.p.get('ca_path') or None)

    def ftp(self, parts):
        if parts.scheme == 'ftps':
            ftp = ftplib.FTP_TLS(context=self.ssl_context(), timeout=self.timeout)
        else:
            ftp = ftplib.FTP(timeout=self.timeout)
        ftp.connect(parts.hostname, parts.port or 21)
        ftp.login(self.p.get('url_username') or 'anonymous', self.p.get('url_password') or '')
        if parts.scheme == 'ftps':
            ftp.prot_p()  # the data connection encrypted too
        ftp.voidcmd('TYPE I')
        return ftp

    def fetch(self, url, handle, offset=0):
        """Write the bytes of ``url`` from ``offset`` into ``handle``; returns the offset actually used (0 when the
        server cannot resume and sent the whole file)."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme in ('ftp', 'ftps'):
            return self.fetch_ftp(parts, handle, offset)
        if parts.scheme == 'file':
            with open(urllib.request.url2pathname(parts.path), 'rb') as src:
                if offset > os.fstat(src.fileno()).st_size:
                    offset = 0
                src.seek(offset)
                handle.seek(offset)
                handle.truncate()
                shutil.copyfileobj(src, handle, CHUNK)
            return offset
        return self.fetch_http(url, handle, offset)

    def fetch_ftp(self, parts, handle, offset):
        path = urllib.parse.unquote(parts.path)
        ftp = self.ftp(parts)
        try:
            try:
                size = ftp.size(path)
            except ftplib.error_perm:
                size = None
            if size is not None and offset > size:
                offset = 0
            if offset and size is not None and offset == size:
                return offset
            if offset:
                handle.seek(offset)
                handle.truncate()
            ftp.retrbinary('RETR ' + path, handle.write, CHUNK, rest=offset or None)
            return offset
        finally:
            try:
                ftp.quit()
            except (OSError, EOFError, ftplib.Error):
                ftp.close()

    def fetch_http(self, url, handle, offset):
        request = urllib.request.Request(url, headers={'User-Agent': 'clinops.upgrade artifact_fetch'})
        if offset:
            request.add_header('Range', 'bytes=%d-' % offset)
        handlers = []
        if url.startswith('https:'):
            handlers.append(urllib.request.HTTPSHandler(context=self.ssl_context()))
        if self.p.get('url_username'):
            manager = urllib.request.HTTPPasswordMgrWithDefaultRealm()
            manager.add_password(None, url, self.p['url_username'], self.p.get('url_password') or '')
            handlers.append(urllib.request.HTTPBasicAuthHandler(manager))
        opener = urllib.request.build_opener(*handlers)
        try:
            response = opener.open(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and offset:  # the partial file is already whole (or longer): start again
                handle.seek(0)
                handle.truncate()
                return self.fetch_http(url, handle, 0)
            raise
        with response:
            if offset and response.status != 206:
                offset = 0  # the server sent the whole file
            handle.seek(offset)
            handle.truncate()
            shutil.copyfileobj(response, handle, CHUNK)
        return offset

    def read_text(self, url, limit=65536):
        class Sink:
            def __init__(self):
                self.data = b''

            def write(self, chunk):
                self.data += chunk
                if len(self.data) > limit:
                    raise FetchError('the checksum file %s is larger than %d bytes' % (public_url(url), limit))

            @staticmethod
            def seek(_offset):
                return None

            @staticmethod
            def truncate():
                return None

        sink = Sink()
        self.fetch(url, sink)
        return sink.data.decode('utf-8', 'replace')


def describe(exc):
    if isinstance(exc, urllib.error.HTTPError):
        return 'HTTP %s %s' % (exc.code, exc.reason)
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    if isinstance(exc, ssl.SSLError):
        return 'TLS: %s' % exc
    if isinstance(exc, ftplib.Error):
        return 'FTP: %s' % str(exc).strip()
    if isinstance(exc, socket.timeout):
        return 'no answer (timeout)'
    return '%s: %s' % (type(exc).__name__, exc)


def expected_sha256(p, source, name):
    if p.get('checksum'):
        value = p['checksum']
        return (value.split(':', 1)[1] if value.lower().startswith('sha256:') else value).lower()
    try:
        text = source.read_text(p['checksum_url'])
    except FetchError:
        raise
    except Exception as exc:  # pylint: disable=broad-except
        raise FetchError('cannot read the checksum file %s: %s' % (public_url(p['checksum_url']), describe(exc))) from exc
    found = parse_checksum_file(text, name)
    if not found:
        raise FetchError('the checksum file %s holds no sha256 for %s' % (public_url(p['checksum_url']), name))
    return found


def fetch(p, check_mode=False):
    """Download ``p['url']`` into ``p['dest']`` (resuming a partial one) and check its sha256. Returns the result dict."""
    name = file_name(p)
    dest = os.path.join(p['dest'], name)
    part = dest + '.part'
    url = public_url(p['url'])
    source = Source(p)
    expected = expected_sha256(p, source, name)
    result = dict(changed=False, path=dest, url=url, sha256=expected, resumed_from=0, size=0)
    if os.path.isfile(dest) and not os.path.islink(dest):
        if sha256_file(dest) == expected:
            result['size'] = os.path.getsize(dest)
            return result
        if check_mode:
            return dict(result, changed=True, msg='%s is there but its sha256 differs; it would be downloaded again' % dest)
        os.unlink(dest)
    if check_mode:
        partial = os.path.getsize(part) if os.path.isfile(part) else 0
        return dict(result, changed=True, resumed_from=partial)
    if os.path.islink(part) or os.path.islink(dest):
        raise FetchError('%s or %s is a symlink; nothing was downloaded' % (dest, part))
    os.makedirs(p['dest'], 0o750, exist_ok=True)
    offset = os.path.getsize(part) if p.get('resume', True) and os.path.isfile(part) else 0
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (0 if offset else os.O_TRUNC), 0o640)
    try:
        with os.fdopen(fd, 'wb') as handle:
            used = source.fetch(p['url'], handle, offset)
            handle.flush()
            os.fsync(handle.fileno())
    except FetchError:
        raise
    except Exception as exc:  # pylint: disable=broad-except
        got = os.path.getsize(part) if os.path.exists(part) else 0
        raise FetchError('download of %s failed after %d bytes (kept in %s; the next run resumes): %s'
                         % (url, got, part, describe(exc))) from exc
    actual = sha256_file(part)
    size = os.path.getsize(part)
    if actual != expected:
        os.unlink(part)  # a wrong file is not resumed
        raise FetchError('download of %s is not the release: its sha256 is %s, expected %s (%d bytes%s); it was deleted'
                         % (url, actual, expected, size, ', resumed from byte %d' % used if used else ''))
    os.replace(part, dest)
    return dict(result, changed=True, resumed_from=used, size=size)


def run(module):
    """The whole behaviour of the module artifact_fetch; ends in ``module.exit_json`` or ``module.fail_json``."""
    p = module.params
    errors = problems(p)
    if errors:
        module.fail_json(msg='; '.join(errors))
        return
    try:
        result = fetch(p, module.check_mode)
    except FetchError as exc:
        module.fail_json(msg=str(exc), url=public_url(p['url']))
        return
    except OSError as exc:
        module.fail_json(msg='download of %s: %s' % (public_url(p['url']), exc), url=public_url(p['url']))
        return
    module.exit_json(**result)
