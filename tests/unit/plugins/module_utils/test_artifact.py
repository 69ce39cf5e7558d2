"""Unit tests for artifact (artifact_fetch): input checks, checksum files, and real file:// downloads and resumes."""
from __future__ import annotations

import hashlib
import os

import pytest

from ansible_collections.clinops.upgrade.plugins.module_utils import artifact

SHA = 'a' * 64


def params(**kwargs):
    base = {name: spec.get('default') for name, spec in artifact.argument_spec().items()}
    base.update(kwargs)
    return base


@pytest.mark.parametrize('kwargs, expected', [
    (dict(url='ftp://127.0.0.1/r/x.tar.gz', dest='/s', checksum=SHA), None),
    (dict(url='ftps://127.0.0.1:990/x.zip', dest='/s', checksum='sha256:' + SHA.upper()), None),
    (dict(url='file:///srv/x.tar.gz', dest='/s', checksum_url='file:///srv/x.tar.gz.sha256'), None),
    (dict(url='gopher://127.0.0.1/x', dest='/s', checksum=SHA), 'the scheme must be one of'),
    (dict(url='ftp://u:secret@127.0.0.1/x.tar.gz', dest='/s', checksum=SHA), 'url_username/url_password'),
    (dict(url='https:///x.tar.gz', dest='/s', checksum=SHA), 'has no host'),
    (dict(url='ftp://127.0.0.1/dir/', dest='/s', checksum=SHA), 'does not name a file'),
    (dict(url='ftp://127.0.0.1/x.tar.gz', dest='/s', checksum='abc'), 'must be the sha256'),
    (dict(url='ftp://127.0.0.1/x.tar.gz', dest='/s', checksum=SHA, name='../x'), 'plain file name'),
    (dict(url='ftp://127.0.0.1/x.tar.gz', dest='/s', checksum=SHA, timeout=0), 'timeout'),
])
def test_problems(kwargs, expected):
    found = artifact.problems(params(**kwargs))
    if expected is None:
        assert found == []
    else:
        assert any(expected in p for p in found), found
    assert all('secret' not in p for p in found)


@pytest.mark.parametrize('text, expected', [
    (SHA + '\n', SHA),
    (SHA.upper() + '  rel.tar.gz\n', SHA),
    ('%s  other.tar.gz\n%s *rel.tar.gz\n' % ('b' * 64, SHA), SHA),
    ('%s  other.tar.gz\n%s  another.tar.gz\n' % ('b' * 64, 'c' * 64), None),
    ('not a checksum\n', None),
])
def test_parse_checksum_file(text, expected):
    assert artifact.parse_checksum_file(text, 'rel.tar.gz') == expected


def test_public_url_drops_credentials():
    assert artifact.public_url('ftp://u:pw@127.0.0.1:2121/a/b.tar.gz') == 'ftp://127.0.0.1:2121/a/b.tar.gz'


@pytest.fixture
def source(tmp_path):
    data = os.urandom(200000)
    path = tmp_path / 'pub' / 'rel.tar.gz'
    path.parent.mkdir()
    path.write_bytes(data)
    (tmp_path / 'pub' / 'rel.tar.gz.sha256').write_text('%s  rel.tar.gz\n' % hashlib.sha256(data).hexdigest())
    return path, data


def test_file_download_check_mode_real_and_idempotent(source, tmp_path):
    path, data = source
    dest = tmp_path / 'stage'
    p = params(url='file://' + str(path), dest=str(dest), checksum_url='file://%s.sha256' % path)
    planned = artifact.fetch(p, check_mode=True)
    assert planned['changed'] and not dest.exists()
    done = artifact.fetch(p)
    assert done['changed'] and (dest / 'rel.tar.gz').read_bytes() == data
    assert not artifact.fetch(p)['changed']


def test_file_download_resumes_a_partial_file(source, tmp_path):
    path, data = source
    dest = tmp_path / 'stage'
    dest.mkdir()
    (dest / 'rel.tar.gz.part').write_bytes(data[:12345])
    done = artifact.fetch(params(url='file://' + str(path), dest=str(dest), checksum=hashlib.sha256(data).hexdigest()))
    assert done['resumed_from'] == 12345
    assert (dest / 'rel.tar.gz').read_bytes() == data and not (dest / 'rel.tar.gz.part').exists()


def test_a_wrong_file_is_deleted_and_named(source, tmp_path):
    path, data = source
    dest = tmp_path / 'stage'
    with pytest.raises(artifact.FetchError) as failed:
        artifact.fetch(params(url='file://' + str(path), dest=str(dest), checksum=SHA))
    assert str(path) in str(failed.value) and SHA in str(failed.value) and hashlib.sha256(data).hexdigest() in str(failed.value)
    assert os.listdir(dest) == []


def test_a_missing_checksum_entry_is_refused_before_any_download(source, tmp_path):
    path, dummy = source
    (path.parent / 'other.sha256').write_text('%s  other.tar.gz\n%s  more.tar.gz\n' % (SHA, SHA))
    with pytest.raises(artifact.FetchError) as failed:
        artifact.fetch(params(url='file://' + str(path), dest=str(tmp_path / 's'), checksum_url='file://%s/other.sha256' % path.parent))
    assert 'no sha256 for rel.tar.gz' in str(failed.value)
    assert not (tmp_path / 's').exists()
