"""Unit tests for module_utils installer and queues: input checks, placeholders, the drain's deadline and counts,
and the web interface's session count."""
from __future__ import annotations

import json
import os

import pytest

from ansible_collections.clinops.upgrade.plugins.module_utils import installer, queues
from ansible_collections.clinops.upgrade.plugins.module_utils.host import StepFailed
from ansible_collections.clinops.upgrade.plugins.module_utils.journal import Journal

CONN = dict(engine='postgresql', database='ImageServer')


def test_placeholders_are_replaced_in_the_installer_command_line():
    argv = installer.substitute(['msiexec', '/i', '{staged}/ImageServer.msi', '/qn', '/l*v', '{log}', 'VERSION={version}', '{unknown}'],
                                dict(staged='C:/stage/ImageServer-2.0', log='C:/logs/setup.log', version='2.0.0'))
    assert argv == ['msiexec', '/i', 'C:/stage/ImageServer-2.0/ImageServer.msi', '/qn', '/l*v', 'C:/logs/setup.log',
                    'VERSION=2.0.0', '{unknown}']


@pytest.mark.parametrize('params, expected', [
    (dict(installer=dict(args=[])), 'installer.args must be the installer command line'),
    (dict(installer=dict(args=['x'], progress_re='(')), 'installer.progress_re is not a regular expression'),
    (dict(installer=dict(args=['x'], timeout=0)), 'installer.timeout must be a positive number'),
    (dict(installer=dict(args=['x'], schema_version_query='SELECT 1')), 'schema_version_query needs installer.connection'),
    (dict(installer=dict(args=['x'], may_lose_rows='Alert')), 'may_lose_rows must be a list'),
    (dict(post_jobs=[dict(name='rebuild')]), 'post_jobs[0] needs name and argv'),
    (dict(post_jobs=[dict(name='rebuild', argv=['x'], error_re='[')]), 'post_jobs[0].error_re is not a regular expression'),
])
def test_installer_input_problems_are_named(params, expected):
    problems = installer.problems(params)
    assert any(expected in p for p in problems), problems


def test_good_installer_input_has_no_problem():
    assert installer.problems(dict(installer=dict(args=['setup'], connection=CONN, schema_version_query='SELECT 1',
                                                  may_lose_rows=['Alert'], timeout=60),
                                   post_jobs=[dict(name='rebuild', argv=['x'], progress_re=r'(?P<done>\d+)/(?P<total>\d+)')])) == []


@pytest.mark.parametrize('spec, web, expected', [
    (dict(wait=[dict(name='SIQ', query='SELECT 1')]), None, 'queues needs connection'),
    (dict(connection=CONN, wait=[dict(name='SIQ')]), None, 'queues.wait[0] needs name and query'),
    (dict(connection=CONN, max_wait=-1), None, 'queues.max_wait must be a number of seconds'),
    (None, dict(url='ftp://x/sessions'), 'web_sessions.url must be an http:// or https:// URL'),
])
def test_queue_input_problems_are_named(spec, web, expected):
    problems = queues.problems(spec, web)
    assert any(expected in p for p in problems), problems


def test_the_session_count_is_read_from_json_or_a_plain_number():
    assert queues.session_count(json.dumps({'sessions': 3}), 'sessions') == 3
    assert queues.session_count(json.dumps({'web': {'open': 2}}), 'web.open') == 2
    assert queues.session_count('5\n', None) == 5


class Module:
    def __init__(self):
        self.warnings = []
        self.no_log_values = set()

    def warn(self, text):
        self.warnings.append(text)


class Engine:
    def __init__(self, tmp_path, spec):
        path = str(tmp_path / 'journal.jsonl')
        self.journal = Journal(path, '2.0.0', 'run1')
        self.journal.record('begin', 'ok')
        self.module = Module()
        self.p = dict(queues=spec)


def fake_counts(monkeypatch, sequence):
    answers = iter(sequence)
    monkeypatch.setattr(queues, 'counts', lambda connection, entries: next(answers) if entries[0]['name'] == 'SIQ'
                        else {'WorkQueue': 4})


def test_the_drain_waits_until_the_queues_are_empty_journaling_the_counts_as_they_fall(tmp_path, monkeypatch):
    fake_counts(monkeypatch, [{'SIQ': 2}, {'SIQ': 2}, {'SIQ': 1}, {'SIQ': 0}])
    engine = Engine(tmp_path, dict(connection=CONN, wait=[dict(name='SIQ', query='q')], advice=[dict(name='WorkQueue', query='q')],
                                   max_wait=30, interval=0.2))
    data = queues.drain(engine)
    notes = [e['message'] for e in engine.journal.entries if e['result'] == 'progress']
    assert notes == ['waiting for the queues: SIQ 2', 'waiting for the queues: SIQ 1', 'waiting for the queues: SIQ 0',
                     'advice: WorkQueue 4 still hold entries (not required)']
    assert [h['counts'] for h in data['queue_history']] == [{'SIQ': 2}, {'SIQ': 1}, {'SIQ': 0}]
    assert data['queue_advice'] == {'WorkQueue': 4}
    assert 'advice (not required)' in engine.module.warnings[0]


def test_the_drain_fails_at_its_deadline_with_the_counts_left(tmp_path, monkeypatch):
    monkeypatch.setattr(queues, 'counts', lambda connection, entries: {'SIQ': 0, 'Reconcile': 1})
    engine = Engine(tmp_path, dict(connection=CONN, wait=[dict(name='SIQ', query='q')], max_wait=1, interval=0.2))
    with pytest.raises(StepFailed) as caught:
        queues.drain(engine)
    assert caught.value.msg == ('the queues were not empty after 1 s (max_wait): Reconcile 1 left; nothing was stopped, '
                                'the product keeps running')


def test_without_queues_the_step_has_nothing_to_do(tmp_path):
    assert queues.drain(Engine(tmp_path, None)) is None
    assert os.path.exists(str(tmp_path / 'journal.jsonl'))
