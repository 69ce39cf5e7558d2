"""Unit tests for module_utils followlog: a real program followed through its log file and through its output."""
from __future__ import annotations

import os
import sys

from ansible_collections.clinops.upgrade.plugins.module_utils import followlog

WRITER = r'''
import sys, time
log = open(sys.argv[1], 'a')
for n in range(1, 5):
    log.write('Progress %d%%: step %d\n' % (n * 25, n)); log.flush(); time.sleep(0.15)
if sys.argv[2] == 'fail':
    log.write('ERROR the schema upgrade failed\n'); log.flush(); sys.exit(3)
if sys.argv[2] == 'hang':
    time.sleep(60)
print('done on stdout')
'''


def run(tmp_path, mode, **kwargs):
    script = tmp_path / 'writer.py'
    script.write_text(WRITER)
    log = str(tmp_path / 'setup.log')
    with open(log, 'w', encoding='utf-8') as handle:
        handle.write('an older run\n')   # what was there before is not this run's
    seen = []
    result = followlog.run_following(None, [sys.executable, str(script), log, mode], log_path=log,
                                     progress_re=r'Progress (?P<percent>\d+)%', error_re=r'\bERROR\b',
                                     on_line=lambda line, progress: seen.append((line, progress)), **kwargs)
    return result, seen


def test_the_log_is_followed_line_by_line_with_the_progress(tmp_path):
    result, seen = run(tmp_path, 'ok', timeout=60)
    assert result['rc'] == 0 and result['ended'] == 'exited' and result['errors'] == []
    assert [p['percent'] for line, p in seen] == [25, 50, 75, 100]
    assert seen[0][0] == 'Progress 25%: step 1'
    assert result['progress'] == {'percent': 100}
    assert result['output'] == ['done on stdout']


def test_error_lines_and_the_exit_code_are_returned(tmp_path):
    result = run(tmp_path, 'fail', timeout=60)[0]
    assert result['rc'] == 3 and result['errors'] == ['ERROR the schema upgrade failed']
    assert followlog.describe(result, 'the installer') == 'the installer exited with code 3: ERROR the schema upgrade failed'


def test_a_program_that_writes_nothing_for_too_long_is_ended(tmp_path):
    result, seen = run(tmp_path, 'hang', timeout=60, stall_timeout=1)
    assert result['ended'] == 'stalled' and result['rc'] != 0
    assert len(seen) == 4 and result['seconds'] < 30
    assert followlog.describe(result, 'the installer').startswith('the installer wrote nothing for too long and was ended')


def test_a_program_that_runs_too_long_is_ended(tmp_path):
    result = run(tmp_path, 'hang', timeout=2)[0]
    assert result['ended'] == 'timeout'


def test_without_a_log_its_output_is_followed_and_done_total_gives_a_percentage(tmp_path):
    seen = []
    result = followlog.run_following(None, [sys.executable, '-c', 'print("rebuild: 3/4 files"); print("rebuild: 4/4 files")'],
                                     progress_re=r'(?P<done>\d+)/(?P<total>\d+) files',
                                     on_line=lambda line, progress: seen.append(progress), cwd=str(tmp_path))
    assert result['rc'] == 0
    assert seen == [{'done': 3, 'total': 4, 'percent': 75.0}, {'done': 4, 'total': 4, 'percent': 100.0}]
    assert not [n for n in os.listdir(str(tmp_path)) if n.startswith('clinops-follow-')]


def test_a_host_that_follows_by_itself_is_asked():
    class Host:
        def run_following(self, argv, **kwargs):
            return dict(rc=0, argv=argv, kwargs=sorted(kwargs))
    answer = followlog.run_following(Host(), ['setup.exe'], log_path='C:/setup.log')
    assert answer['argv'] == ['setup.exe'] and 'log_path' in answer['kwargs']
