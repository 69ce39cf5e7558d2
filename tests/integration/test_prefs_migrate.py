"""prefs_migrate on real trees in tmp_path, through real ansible-playbook runs (harness.run_task).

Each scenario runs in check mode first (the trees' hashes must not move), then for real (state read back
from the files), then again (changed must be false).
"""
import hashlib
import os
import stat
import sys

import pytest

import harness

MODULE = 'clinops.upgrade.prefs_migrate'


def write(path, data, mode=None):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(str(path), 'wb') as handle:
        handle.write(data)
    if mode is not None:
        os.chmod(str(path), mode)


def read(path):
    with open(str(path), 'rb') as handle:
        return handle.read()


def tree_hash(root):
    """Every entry below root: type, mode, owner, size and content hash (symlinks by their target)."""
    out = {}
    for folder, dirs, files in os.walk(str(root)):
        for name in dirs + files:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                content = hashlib.sha256(read(path)).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(path)
            else:
                content = None
            out[os.path.relpath(path, str(root))] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, content)
    return out


def cycle(args, tmp_path):
    """check mode (nothing moves), real run, rerun (not changed); returns the real run's result."""
    before = tree_hash(tmp_path)
    checked = harness.run_task(MODULE, args, check=True, diff=True)
    assert not checked.get('failed'), checked
    assert checked['changed'] is True
    assert tree_hash(tmp_path) == before, 'check mode changed files'
    result = harness.run_task(MODULE, args)
    assert not result.get('failed'), result
    assert result['changed'] is True
    after = tree_hash(tmp_path)
    again = harness.run_task(MODULE, args)
    assert not again.get('failed'), again
    assert again['changed'] is False
    assert tree_hash(tmp_path) == after
    return checked, result


# ------------------------------------------------------------------ ConAktiv

PREFS_OLD = ('<?xml version="1.0" encoding="ISO-8859-1"?>\r\n<!-- ConAktiv server settings -->\r\n<preferences>\r\n'
             '  <backup enabled="1" time="02:30" target="D:\\Sicherung\\Tägl"/>\r\n'
             '  <cache size="512"/>\r\n  <timeout seconds="600"/>\r\n'
             '  <webserver autostart="1" port="8443"/>\r\n  <mail smtp_password="Geheim123"/>\r\n</preferences>\r\n').encode('latin-1')
PREFS_NEW = ('<?xml version="1.0" encoding="ISO-8859-1"?>\r\n<!-- ConAktiv 9 server settings -->\r\n<preferences>\r\n'
             '  <backup enabled="0" time="23:00" target=""/>\r\n'
             '  <cache size="256"/>\r\n  <timeout seconds="300"/>\r\n'
             '  <webserver autostart="0" port="8080" http2="1"/>\r\n  <mail smtp_password=""/>\r\n</preferences>\r\n').encode('latin-1')
PREFS_DEFAULT = PREFS_OLD.replace(b'enabled="1" time="02:30" target="D:\\Sicherung\\T\xe4gl"', b'enabled="0" time="23:00" target=""') \
    .replace(b'size="512"', b'size="128"').replace(b'autostart="1" port="8443"', b'autostart="0" port="8080"') \
    .replace(b'Geheim123', b'')
KEY = b'-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n'
CERT = b'-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+gAwIBAgIE\n-----END CERTIFICATE-----\n'


@pytest.fixture
def conaktiv(tmp_path):
    old = tmp_path / 'ConAktiv Server_old0001'
    new = tmp_path / 'ConAktiv Server'
    pristine = tmp_path / 'pristine'
    db = 'Server Database'
    write(old / db / 'Preferences' / 'Server.xml', PREFS_OLD)
    write(old / db / 'Preferences' / 'Backup' / 'Plan.prefs', 'intervall=täglich\r\nziel=D:\\\\Sicherung\r\n'.encode('latin-1'))
    write(old / db / 'cert.pem', CERT, 0o644)
    write(old / db / 'key.pem', KEY, 0o600)
    write(new / db / 'Preferences' / 'Server.xml', PREFS_NEW)
    write(pristine / db / 'Preferences' / 'Server.xml', PREFS_DEFAULT)
    write(new / db / 'data.4DD', b'\x00new user data')
    # a few thousand dictionary files in nested folders
    for lang in ('de_DE', 'de_AT', 'en_US', 'fr_FR'):
        for group in range(10):
            for index in range(60):
                rel = os.path.join(db, 'Resources', 'Hunspell', lang, 'g%02d' % group, 'w%03d.dic' % index)
                write(old / rel, ('%s %d %d Wörterbuch\r\n' % (lang, group, index)).encode('latin-1') * 3)
    write(new / db / 'Resources' / 'Hunspell' / 'de_DE' / 'g00' / 'w000.dic', b'stale\n')
    return dict(tmp=tmp_path, old=old, new=new, pristine=pristine)


def conaktiv_args(env, **extra):
    args = dict(src=str(env['old']), dest=str(env['new']), defaults=str(env['pristine']), items=[
        dict(path='Server Database/Preferences', mode='copy', required=True),
        dict(path='Server Database/Preferences/*.xml', mode='merge'),
        dict(path='Server Database/cert.pem'),
        dict(path='Server Database/key.pem'),
        dict(path='Server Database/Resources/Hunspell'),
    ])
    args.update(extra)
    return args


def test_conaktiv_carry_over(conaktiv):
    env = conaktiv
    checked, result = cycle(conaktiv_args(env), env['tmp'])
    db = env['new'] / 'Server Database'
    merged = read(db / 'Preferences' / 'Server.xml')
    # customised values carried, new defaults where the old value was the old default, comments/CRLF kept
    assert b'<!-- ConAktiv 9 server settings -->\r\n' in merged
    assert b'<backup enabled="1" time="02:30" target="D:\\Sicherung\\T\xe4gl"/>' in merged
    assert b'<cache size="512"/>' in merged
    assert b'<timeout seconds="300"/>' in merged  # 600 was the old default: not frozen
    assert b'<webserver autostart="1" port="8443" http2="1"/>' in merged
    assert b'smtp_password="Geheim123"' in merged
    assert merged.count(b'\r\n') == merged.count(b'\n')
    entry = result['merged'][0]
    assert entry['path'] == 'Server Database/Preferences/Server.xml'
    assert 'preferences/timeout/@seconds' not in entry['keys']
    assert 'preferences/webserver/@port' in entry['keys']
    assert 'preferences/webserver/@http2' in entry['added']
    assert read(db / 'Preferences' / 'Backup' / 'Plan.prefs') == 'intervall=täglich\r\nziel=D:\\\\Sicherung\r\n'.encode('latin-1')
    # the key pair: copied, verified, key still 0600
    assert read(db / 'key.pem') == KEY and read(db / 'cert.pem') == CERT
    assert stat.S_IMODE(os.stat(str(db / 'key.pem')).st_mode) == 0o600
    # thousands of nested dictionary files, byte for byte
    hunspell = [p for p in result['copied'] if p.startswith('Server Database/Resources/Hunspell/')]
    assert len(hunspell) == 2400
    for rel in hunspell[::97]:
        assert read(env['new'] / rel) == read(env['old'] / rel)
    assert read(db / 'data.4DD') == b'\x00new user data'
    # backups of what was replaced, beside dest
    backup = result['backup_dir']
    assert os.path.dirname(backup) == str(env['tmp'])
    assert read(os.path.join(backup, 'Server Database', 'Preferences', 'Server.xml')) == PREFS_NEW
    assert read(os.path.join(backup, 'Server Database/Resources/Hunspell/de_DE/g00/w000.dic')) == b'stale\n'
    # diff mode: per file, secrets never shown
    diffs = checked['diff']
    text = repr(diffs)
    assert 'Geheim123' not in text and 'MIIEvQIBADAN' not in text
    assert any(d['after_header'].startswith('Server Database/Preferences/Server.xml') for d in diffs)
    assert 'MIIDdzCCAl' in text  # a certificate is public


def test_symlink_escaping_root_refused(conaktiv, tmp_path):
    outside = tmp_path / 'outside.dic'
    write(outside, b'not yours')
    os.symlink(str(outside), str(conaktiv['old'] / 'Server Database/Resources/Hunspell/de_DE/evil.dic'))
    before = tree_hash(tmp_path)
    result = harness.run_task(MODULE, conaktiv_args(conaktiv))
    assert result.get('failed')
    assert 'outside' in result['msg'] and 'evil.dic' in result['msg']
    assert tree_hash(tmp_path) == before


def test_issue_11_symlinked_folder_to_etc_refused(tmp_path):
    """The issue's case, with the real /etc: old/escape -> /etc, item escape/hostname; check mode predicts the refusal."""
    old, new = tmp_path / 'old', tmp_path / 'new'
    write(old / 'properties' / 'a.properties', b'a=1\n')
    write(new / 'properties' / 'a.properties', b'a=2\n')
    os.symlink('/etc', str(old / 'escape'))
    os.symlink('/etc/passwd', str(old / 'properties' / 'x.properties'))
    before = tree_hash(tmp_path)
    for items in ([dict(path='escape/hostname')], [dict(path='properties')]):
        for check in (True, False):
            result = harness.run_task(MODULE, dict(src=str(old), dest=str(new), items=items), check=check)
            assert result.get('failed') and not result.get('changed')
            assert 'outside' in result['msg'] and ('escape' in result['msg'] or 'x.properties' in result['msg'])
            assert tree_hash(tmp_path) == before
    assert os.listdir(str(new)) == ['properties'] and sorted(os.listdir(str(tmp_path))) == ['new', 'old']


def test_inside_symlink_carried_as_symlink(tmp_path):
    old, new = tmp_path / 'old', tmp_path / 'new'
    write(old / 'conf' / 'real.properties', b'a=1\n')
    os.symlink('real.properties', str(old / 'conf' / 'alias.properties'))
    os.makedirs(str(new / 'conf'))
    checked, result = cycle(dict(src=str(old), dest=str(new), items=[dict(path='conf')]), tmp_path)
    assert sorted(result['copied']) == ['conf/alias.properties', 'conf/real.properties']
    assert os.readlink(str(new / 'conf' / 'alias.properties')) == 'real.properties'
    assert any(d['after_header'].startswith('conf/alias.properties') for d in checked['diff'])


def test_failure_mid_way_leaves_dest_unchanged(conaktiv, tmp_path):
    """A file-size limit on the module process makes the copy of a big file fail after others were staged."""
    big = conaktiv['old'] / 'Server Database/Resources/Hunspell/zz_big/huge.dic'
    write(big, os.urandom(6 * 1024 * 1024))
    wrapper = tmp_path / 'python-fsize-limited'
    write(wrapper, ('#!/bin/sh\nexec %s -c "import os, resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (4 << 20, 4 << 20)); '
                    'os.execv(sys.executable, [sys.executable] + sys.argv[1:])" "$@"\n' % sys.executable).encode(), 0o755)
    before = tree_hash(conaktiv['new'])
    outside_before = sorted(os.listdir(str(tmp_path)))
    play = [{'name': 'limited', 'hosts': 'localhost', 'gather_facts': False,
             'vars': {'ansible_python_interpreter': str(wrapper)},
             'tasks': [{'name': 'under test', MODULE: conaktiv_args(conaktiv), 'ignore_errors': True}]}]
    result = harness.run_playbook(play).result('under test')
    assert result.get('failed'), result
    assert 'restored dest' in result['msg'], result['msg']
    assert tree_hash(conaktiv['new']) == before
    assert sorted(os.listdir(str(tmp_path))) == outside_before  # no backup folder left behind


# ------------------------------------------------------------------ PMOD

@pytest.fixture
def pmod(tmp_path):
    old, new = tmp_path / 'Pmod4.3', tmp_path / 'Pmod4.4'
    write(old / 'properties' / 'Pmod.properties',
          '# PMOD 4.3\r\ndatabase.path=D:\\\\PMOD-DB\r\nts.host=pmod-ts.klinik.local\r\nts.port=1099\r\n'
          'user.name=Dr. M\\u00fcller \u00e9\r\nlicense.server=pmodls\r\ndb.password=PmodSecret!\r\nold.feature=1\r\n'.encode('latin-1'))
    write(old / 'properties' / 'users' / 'radiology' / 'User.properties', b'viewer.layout=2x2\r\n')
    write(old / 'properties' / 'dicom' / 'DicomServer.json', b'{"aet": "PMOD_DS", "port": 11112, "peers": ["ORTHANC"]}')
    write(old / 'properties' / 'Window.ini', b'[Main]\r\nWidth=1600\r\n')
    write(new / 'properties' / 'Pmod.properties',
          b'# PMOD 4.4 defaults\r\n# database location\r\ndatabase.path=C:\\\\Pmod4.4\\\\data\r\nts.host=localhost\r\nts.port=1099\r\n'
          b'user.name=\r\nlicense.server=\r\ndb.password=\r\nnew.render.gpu=true\r\n')
    write(new / 'properties' / 'dicom' / 'DicomServer.json', b'{\r\n  "aet": "PMOD",\r\n  "port": 104,\r\n  "peers": [],\r\n  "tls": false\r\n}\r\n')
    return dict(tmp=tmp_path, old=old, new=new)


def test_pmod_import_properties(pmod):
    args = dict(src=str(pmod['old']), dest=str(pmod['new']), items=[
        dict(path='properties', mode='merge'),
        dict(path='properties/Window.ini', mode='keep'),
        dict(path='properties/license', required=False),
    ])
    checked, result = cycle(args, pmod['tmp'])
    props = read(pmod['new'] / 'properties' / 'Pmod.properties')
    assert props == (b'# PMOD 4.4 defaults\r\n# database location\r\ndatabase.path=D:\\\\PMOD-DB\r\nts.host=pmod-ts.klinik.local\r\n'
                     b'ts.port=1099\r\nuser.name=Dr. M\\u00fcller \xe9\r\nlicense.server=pmodls\r\ndb.password=PmodSecret!\r\n'
                     b'new.render.gpu=true\r\n')
    assert result['dropped_keys'] == {'properties/Pmod.properties': ['old.feature']}
    assert read(pmod['new'] / 'properties' / 'users' / 'radiology' / 'User.properties') == b'viewer.layout=2x2\r\n'
    assert read(pmod['new'] / 'properties' / 'dicom' / 'DicomServer.json') == \
        b'{\r\n  "aet": "PMOD_DS",\r\n  "port": 11112,\r\n  "peers": [\r\n    "ORTHANC"\r\n  ],\r\n  "tls": false\r\n}\r\n'
    assert not os.path.exists(str(pmod['new'] / 'properties' / 'Window.ini'))
    assert result['missing'] == ['properties/license']
    assert sorted(result['copied']) == ['properties/users/radiology/User.properties']
    assert 'PmodSecret' not in repr(checked['diff'])


# ------------------------------------------------------------------ bad input: a clear failure, nothing written

@pytest.mark.parametrize('case, message', [
    ('src-missing', 'does not exist'),
    ('dest-inside-src', 'inside src'),
    ('malformed-properties', 'malformed'),
    ('unknown-format', 'format'),
    ('unknown-extension', 'cannot tell the format'),
    ('absolute-item', 'absolute'),
])
def test_bad_input_fails_before_writing(pmod, case, message):
    args = dict(src=str(pmod['old']), dest=str(pmod['new']), items=[dict(path='properties', mode='merge')])
    if case == 'src-missing':
        args['src'] = str(pmod['tmp'] / 'Pmod4.2')
    elif case == 'dest-inside-src':
        os.makedirs(str(pmod['old'] / 'next'))
        args['dest'] = str(pmod['old'] / 'next')
    elif case == 'malformed-properties':
        write(pmod['old'] / 'properties' / 'Pmod.properties', b'user.name=M\\u00Gller\r\n')
    elif case == 'unknown-format':
        args['items'] = [dict(path='properties', mode='merge', format='yaml')]
    elif case == 'unknown-extension':
        write(pmod['old'] / 'properties' / 'layout.dat', b'1')
        write(pmod['new'] / 'properties' / 'layout.dat', b'2')
    elif case == 'absolute-item':
        args['items'] = [dict(path='/etc/shadow')]
    before = tree_hash(pmod['tmp'])
    result = harness.run_task(MODULE, args)
    assert result.get('failed'), result
    assert message in result['msg'], result['msg']
    assert 'Traceback' not in result['msg'] and 'Traceback' not in result.get('module_stderr', '')
    assert tree_hash(pmod['tmp']) == before
