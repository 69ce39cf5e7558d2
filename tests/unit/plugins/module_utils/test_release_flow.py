"""Unit tests for release_flow's pure parts (versions, kinds, channels, countdown) and followlog."""
from __future__ import annotations

import json
import os
import sys

import pytest

from ansible_collections.clinops.upgrade.plugins.module_utils import release_flow as rf
from ansible_collections.clinops.upgrade.plugins.module_utils.release_flow import run_following
from ansible_collections.clinops.upgrade.plugins.module_utils.host import StepFailed

LISTING = json.dumps({'channels': {
    'stable': [{'version': '6.0.51.22965', 'file': 'ksamu-6.0.51.22965.tar.gz'},
               {'version': '6.0.52.23001', 'file': 'ksamu-6.0.52.23001.tar.gz'},
               {'version': '6.0.51.22966', 'file': 'ksamu-6.0.51.22966.tar.gz'}],
    'test': [{'version': '6.0.52.23005', 'file': 'ksamu-6.0.52.23005.tar.gz'},
             {'version': '6.0.52.9', 'file': 'ksamu-6.0.52.9.tar.gz'}]}})


@pytest.mark.parametrize('installed, target, blocks, kind', [
    ('6.0.51.22965', '6.0.51.22966', 3, 'minor'),     # the scripts' version (first three blocks) is the same
    ('6.0.51.22966', '6.0.52.23001', 3, 'major'),
    ('6.0.51.22965', '6.0.51.22965', 3, 'none'),
    ('6.0.51.22965', '6.1.51.22965', 3, 'major'),
    ('6.0.51.22965', '6.0.51.22966', 4, 'major'),
    ('4.3.0', '4.4.0', 2, 'major'),
    ('4.4.0', '4.4.1', 2, 'minor'),
    ('6.0.51', '6.0.51.1', 3, 'minor'),
])
def test_kind_from_the_first_blocks(installed, target, blocks, kind):
    assert rf.upgrade_kind(installed, target, blocks) == kind


def test_versions_compare_as_numbers_not_text():
    assert rf.blocks('6.0.100.1') > rf.blocks('6.0.99.99999')
    with pytest.raises(ValueError, match='numeric blocks'):
        rf.blocks('6.0.51-beta')


def test_the_newest_of_the_channel_by_number():
    channels = rf.read_listing(LISTING)
    assert rf.pick_release(channels, 'stable')['version'] == '6.0.52.23001'
    assert rf.pick_release(channels, 'test', by_hand=True) == dict(
        version='6.0.52.23005', file='ksamu-6.0.52.23005.tar.gz', channel='test')


def test_the_version_asked_must_be_on_the_channel():
    channels = rf.read_listing(LISTING)
    assert rf.pick_release(channels, 'stable', '6.0.51.22966')['file'] == 'ksamu-6.0.51.22966.tar.gz'
    with pytest.raises(rf.ReleaseError, match="6.0.52.23005 is not on channel 'stable'"):
        rf.pick_release(channels, 'stable', '6.0.52.23005')


def test_the_test_channel_only_by_hand():
    channels = rf.read_listing(LISTING)
    with pytest.raises(rf.ReleaseError, match='only by a run started by hand'):
        rf.pick_release(channels, 'test')
    with pytest.raises(rf.ReleaseError, match='only by a run started by hand'):
        rf.pick_release(channels, 'test', '6.0.52.23005')
    assert rf.pick_release(channels, 'test', '6.0.52.23005', by_hand=True)['channel'] == 'test'


@pytest.mark.parametrize('text, problem', [
    ('not json', 'not JSON'),
    ('{"releases": []}', 'no "channels"'),
    ('{"channels": {"stable": [{"version": "6.0.51.1"}]}}', 'list of {version, file}'),
    ('{"channels": {"stable": [{"version": "6.0.51.1", "file": "../x.tar.gz"}]}}', 'plain file name'),
])
def test_a_bad_listing_is_refused(text, problem):
    with pytest.raises(rf.ReleaseError, match=problem):
        rf.read_listing(text)


def test_an_unknown_channel_names_the_ones_there():
    with pytest.raises(rf.ReleaseError, match='it has: stable, test'):
        rf.pick_release(rf.read_listing(LISTING), 'nightly')


@pytest.mark.parametrize('minutes, points, said', [
    (8, [5, 2, 1], [8, 5, 2, 1]),
    (8, [1, 2, 5, 5, 9, 0], [8, 5, 2, 1]),
    (3, [5, 2, 1], [3, 2, 1]),
    (0, [5, 2, 1], [0]),
])
def test_countdown_points(minutes, points, said):
    assert rf.countdown_points(minutes, points) == said


def test_fill_argv():
    assert rf.fill(['admin', 'broadcast', '{message}'], message='в {minutes} мин.') == ['admin', 'broadcast', 'в {minutes} мин.']
    assert rf.fill('update to {version} in {minutes}', version='6.0.52.23001', minutes=5) == 'update to 6.0.52.23001 in 5'


def test_flow_problems():
    assert rf.flow_problems({}) == []
    problems = rf.flow_problems({'tasks': {'list': ['x'], 'stop': None, 'start': ['y']}, 'lock': {'lock': ['l'], 'unlock': None},
                                 'updater': {'argv': ['u'], 'log': None, 'progress': '(', 'error': None}, 'from_version': 'v1'})
    text = '; '.join(problems)
    for part in ('flow.tasks needs', 'flow.lock needs', 'flow.updater needs argv and log', 'flow.updater.progress', 'flow.from_version'):
        assert part in text


# ---------------------------------------------------------------- followlog, with real processes

def writer(tmp_path, body):
    script = tmp_path / 'updater.py'
    script.write_text('import sys, time\nlog = open(sys.argv[1], "a")\ndef say(t):\n    log.write(t + "\\n"); log.flush()\n' + body)
    return [sys.executable, str(script), str(tmp_path / 'update.log')]


def test_followlog_reports_progress_lines_as_they_come_and_only_new_ones(tmp_path):
    (tmp_path / 'update.log').write_text('old INFO from an earlier run\n')
    seen = []
    result = run_following(None, writer(tmp_path, 'say("x INFO 1/2")\ntime.sleep(0.3)\nsay("debug")\nsay("x INFO 2/2")\n'),
                           str(tmp_path / 'update.log'), r'\bINFO\b', r'\bERROR\b', 10, 30, seen.append)
    assert seen == ['x INFO 1/2', 'x INFO 2/2'] == result['progress']
    assert result['rc'] == 0 and 'old INFO from an earlier run' not in result['tail']


def test_followlog_fails_on_an_error_line_with_the_last_lines(tmp_path):
    with pytest.raises(StepFailed) as failed:
        run_following(None, writer(tmp_path, 'say("x INFO 1/2")\nsay("x ERROR table KS_X does not exist")\n'),
                      str(tmp_path / 'update.log'), r'\bINFO\b', r'\bERROR\b', 10, 30)
    assert 'reported an error' in failed.value.msg and 'x ERROR table KS_X does not exist' in failed.value.msg
    assert 'x INFO 1/2' in failed.value.msg


def test_followlog_stops_a_stalled_program(tmp_path):
    argv = writer(tmp_path, 'say("x INFO started")\ntime.sleep(60)\n')
    with pytest.raises(StepFailed) as failed:
        run_following(None, argv, str(tmp_path / 'update.log'), r'\bINFO\b', r'\bERROR\b', 1, 30)
    assert 'stalled' in failed.value.msg and 'x INFO started' in failed.value.msg


def test_followlog_fails_on_a_non_zero_exit(tmp_path):
    with pytest.raises(StepFailed, match='exit code 3'):
        run_following(None, writer(tmp_path, 'say("x INFO 1")\nsys.exit(3)\n'), str(tmp_path / 'update.log'), 'INFO', 'ERROR', 10, 30)
    assert os.path.exists(tmp_path / 'update.log')
