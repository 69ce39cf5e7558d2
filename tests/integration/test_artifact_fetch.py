"""artifact_fetch through real ansible-playbook runs against a real FTP server (pyftpdlib on 127.0.0.1, stopped by PID).

Each case reads the state back from the files: the downloaded release, its partial file, its sha256.
"""
import hashlib
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), 'lab'))

import ftp_server  # noqa: E402  pylint: disable=wrong-import-position,import-error
from harness import run_task  # noqa: E402  pylint: disable=wrong-import-position

USER = 'vendor'
PASSWORD = 'Ftp-Pa55-never-shown'


@pytest.fixture(scope='module')
def ftp(tmp_path_factory):
    base = tmp_path_factory.mktemp('ftp')
    pub = base / 'pub'
    pub.mkdir()
    payload = os.urandom(3 * 1024 * 1024 + 17)
    (pub / 'release-2.0.tar.gz').write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    (pub / 'release-2.0.tar.gz.sha256').write_text('%s  release-2.0.tar.gz\n' % digest)
    server = ftp_server.start(str(pub), str(base / 'state'), USER, PASSWORD)
    try:
        yield dict(server, payload=payload, sha256=digest)
    finally:
        ftp_server.stop(server['pid'])


def args(ftp, dest, **extra):
    base = dict(url=ftp['url'] + '/release-2.0.tar.gz', dest=str(dest), url_username=USER, url_password=PASSWORD)
    base.update(extra)
    return base


def test_download_check_mode_then_real_then_idempotent(ftp, tmp_path):
    dest = tmp_path / 'Temp_Updateordner'
    checked = run_task('clinops.upgrade.artifact_fetch', args(ftp, dest, checksum_url=ftp['url'] + '/release-2.0.tar.gz.sha256'),
                       check=True)
    assert not checked.get('failed'), checked
    assert checked['changed'] and checked['sha256'] == ftp['sha256']
    assert not dest.exists()
    done = run_task('clinops.upgrade.artifact_fetch', args(ftp, dest, checksum_url=ftp['url'] + '/release-2.0.tar.gz.sha256'))
    assert not done.get('failed'), done
    assert done['changed'] and done['resumed_from'] == 0
    assert (dest / 'release-2.0.tar.gz').read_bytes() == ftp['payload']
    assert not (dest / 'release-2.0.tar.gz.part').exists()
    again = run_task('clinops.upgrade.artifact_fetch', args(ftp, dest, checksum=ftp['sha256']))
    assert not again.get('failed') and not again['changed'], again
    assert PASSWORD not in repr(done) and PASSWORD not in repr(again)


def test_partial_download_is_resumed_with_rest(ftp, tmp_path):
    dest = tmp_path / 'stage'
    dest.mkdir()
    half = len(ftp['payload']) // 2
    (dest / 'release-2.0.tar.gz.part').write_bytes(ftp['payload'][:half])
    done = run_task('clinops.upgrade.artifact_fetch', args(ftp, dest, checksum='sha256:' + ftp['sha256'].upper()))
    assert not done.get('failed'), done
    assert done['resumed_from'] == half
    assert (dest / 'release-2.0.tar.gz').read_bytes() == ftp['payload']
    # the server's own log: the last transfer sent only the second half (REST), not the whole file again
    with open(ftp['log'], encoding='utf-8', errors='replace') as handle:
        retr = [line for line in handle if 'RETR ' in line and 'completed=1' in line]
    assert retr[-1].rstrip().split('bytes=')[1].split()[0] == str(len(ftp['payload']) - half), retr[-1]


def test_wrong_checksum_fails_naming_the_url_and_keeps_nothing(ftp, tmp_path):
    dest = tmp_path / 'stage'
    wrong = '0' * 64
    failed = run_task('clinops.upgrade.artifact_fetch', args(ftp, dest, checksum=wrong))
    assert failed.get('failed')
    assert ftp['url'] + '/release-2.0.tar.gz' in failed['msg']
    assert ftp['sha256'] in failed['msg'] and wrong in failed['msg']
    assert sorted(os.listdir(dest)) == []


def test_refusals_before_any_download(ftp, tmp_path):
    cases = [
        (args(ftp, tmp_path / 'a', url='ftp://%s:%s@127.0.0.1:%d/release-2.0.tar.gz' % (USER, PASSWORD, ftp['port']), checksum='0' * 64),
         'url_username'),
        (args(ftp, tmp_path / 'b', url='gopher://127.0.0.1/x.tar.gz', checksum='0' * 64), 'scheme'),
        (args(ftp, tmp_path / 'c', checksum='abc'), 'sha256'),
        (args(ftp, tmp_path / 'd', url=ftp['url'] + '/missing.tar.gz', checksum='0' * 64), 'FTP: 550'),
        (args(ftp, tmp_path / 'e', url_password='wrong', checksum='0' * 64), 'FTP: 530'),
    ]
    for params, words in cases:
        failed = run_task('clinops.upgrade.artifact_fetch', params)
        assert failed.get('failed') and words in failed['msg'], (params, failed)
        assert PASSWORD not in repr(failed)
        assert not os.path.exists(os.path.join(params['dest'], 'release-2.0.tar.gz'))
