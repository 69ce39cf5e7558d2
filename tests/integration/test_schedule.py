"""The schedule as users set it up: the controller's systemd timer or cron entry (role upgrade_schedule, rendered into a
temporary folder and read back as data), and the AWX schedule of awx/configure.yml (its task rendered with the site's
inventory, the awx.awx.schedule call checked against the pinned collection's documentation).

The three forms of one configuration must start the same instants: systemd's own calendar parser
(``systemd-analyze calendar``), dateutil's RRULE parser (what AWX uses) and the cron fields expanded here agree.
"""
import configparser
import datetime as dt
import os
import shlex
import shutil
import subprocess
from zoneinfo import ZoneInfo

import pytest
import yaml

import contracts
from harness import ROOT, run_playbook

ROLE = 'clinops.upgrade.upgrade_schedule'
KSAMU = {'upgrade_timezone': 'Europe/Moscow', 'upgrade_schedule': {'start': '21:00', 'period': '30min'},
         'upgrade_window': {'forbidden_hours': {'from': '06:00', 'to': '21:00'}, 'forbidden_weekdays': ['sunday']}}
CONAKTIV = {'upgrade_timezone': 'Europe/Berlin', 'upgrade_schedule': {'start': '2026-12-05 22:00', 'period': 'hourly'},
            'upgrade_window': {'start_date': '2026-12-05', 'from': '22:00', 'to': '05:00'}}
COMMAND = ['/opt/clinops venv/bin/ansible-playbook', 'upgrade.yml', '-i', 'inventories/ksamu', '-e', 'note=100%']


def apply_role(tmp_path, site, **role_vars):
    play = [{'name': 'schedule', 'hosts': 'localhost', 'gather_facts': False,
             'vars': dict(site, upgrade_profile='pmod', upgrade_site='city-hospital',
                          upgrade_schedule_systemd_dir=str(tmp_path / 'systemd'),
                          upgrade_schedule_cron_file=str(tmp_path / 'cron.d' / 'clinops-upgrade'),
                          upgrade_schedule_activate=False, upgrade_schedule_user='clinops',
                          upgrade_schedule_chdir='/srv/site repo', upgrade_schedule_command=COMMAND, **role_vars),
             'roles': [{'role': ROLE}]}]
    os.makedirs(tmp_path / 'systemd', exist_ok=True)
    os.makedirs(tmp_path / 'cron.d', exist_ok=True)
    return run_playbook(play)


def unit(path):
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str
    with open(path, encoding='utf-8') as handle:
        parser.read_file(handle)
    return parser


def systemd_args(line):
    """ExecStart= as systemd splits it (double quotes, backslash escapes, %% and $$ for % and $)."""
    return [word.replace('%%', '%').replace('$$', '$') for word in shlex.split(line)]


def systemd_elapses(on_calendar, base, count):
    """The next ``count`` instants of OnCalendar after ``base``, by systemd's own parser."""
    tool = shutil.which('systemd-analyze')
    if tool is None:
        pytest.skip('systemd-analyze is not installed')
    proc = subprocess.run([tool, 'calendar', '--iterations=%d' % count,
                           '--base-time=' + base.astimezone(dt.timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC'), on_calendar],
                          capture_output=True, text=True, check=True, env=dict(os.environ, TZ='UTC'))
    found = []
    for line in proc.stdout.splitlines():
        line = line.strip()
        if line.startswith(('Next elapse:', 'Iter. #')):
            stamp = line.split(':', 1)[1].strip()          # 'Mon 2026-11-30 18:00:00 UTC'
            found.append(dt.datetime.strptime(stamp, '%a %Y-%m-%d %H:%M:%S UTC').replace(tzinfo=dt.timezone.utc))
    return found


def cron_elapses(fields, tz, base, count):
    """The next instants of five cron fields (the forms the role writes: *, n, a-b/s) after ``base``, in ``tz``."""
    def values(field, low, high):
        if field == '*':
            return set(range(low, high + 1))
        if '/' in field:
            span, step = field.split('/')
            first, last = (int(x) for x in span.split('-'))
            return set(range(first, last + 1, int(step)))
        return {int(field)}
    minute, hour, dom, month, dow = fields.split()
    minutes, hours = values(minute, 0, 59), values(hour, 0, 23)
    assert (dom, month) == ('*', '*')
    weekdays = values(dow, 0, 6)
    found = []
    moment = base.astimezone(tz).replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    while len(found) < count:
        if moment.minute in minutes and moment.hour in hours and moment.isoweekday() % 7 in weekdays:
            found.append(moment.astimezone(dt.timezone.utc))
        moment += dt.timedelta(minutes=1)
    return found


def rrule_elapses(rrule, base, count):
    """The next instants of an AWX rrule after ``base``, by dateutil (as AWX parses it: DTSTART and RRULE lines)."""
    rrule_module = pytest.importorskip('dateutil.rrule')
    rule = rrule_module.rrulestr(rrule.replace(' RRULE:', '\nRRULE:'))
    found, moment = [], base
    while len(found) < count:
        moment = rule.after(moment)
        found.append(moment.astimezone(dt.timezone.utc))
    return found


@pytest.mark.parametrize('site, on_calendar, cron, start', [
    (KSAMU, '*-*-* *:00/30:00 Europe/Moscow', '0-59/30 * * * *', '2026-11-30 21:00'),
    (CONAKTIV, '*-*-* 00/1:00:00 Europe/Berlin', '0 * * * *', '2026-12-05 22:00'),
])
def test_systemd_timer_rendered_and_read_back(tmp_path, site, on_calendar, cron, start):
    result = apply_role(tmp_path, site, upgrade_schedule_backend='systemd')
    assert result.rc == 0, result
    timer = unit(tmp_path / 'systemd' / 'clinops-upgrade.timer')
    service = unit(tmp_path / 'systemd' / 'clinops-upgrade.service')
    assert timer['Timer']['OnCalendar'] == on_calendar
    assert timer['Timer']['Unit'] == 'clinops-upgrade.service'
    assert timer['Install']['WantedBy'] == 'timers.target'
    assert service['Service']['Type'] == 'oneshot'
    assert service['Service']['User'] == 'clinops'
    assert systemd_args(service['Service']['WorkingDirectory']) == ['/srv/site repo']
    assert systemd_args(service['Service']['ExecStart']) == COMMAND
    assert 'upgrade_run_now' not in service['Service']['ExecStart']     # a scheduled run is never "by hand"
    assert not os.path.exists(tmp_path / 'cron.d' / 'clinops-upgrade')
    # systemd's own parser agrees with the cron form and the rrule of the same configuration
    tz = ZoneInfo(site['upgrade_timezone'])
    base = dt.datetime.strptime(start, '%Y-%m-%d %H:%M').replace(tzinfo=tz) - dt.timedelta(seconds=1)
    elapses = systemd_elapses(on_calendar, base, 6)
    assert elapses == cron_elapses(cron, tz, base, 6)
    assert elapses[0] == base + dt.timedelta(seconds=1)                   # the first start is the configured one
    step = dt.timedelta(minutes=30 if site is KSAMU else 60)
    assert all(b - a == step for a, b in zip(elapses, elapses[1:]))

    again = apply_role(tmp_path, site, upgrade_schedule_backend='systemd')
    assert again.rc == 0 and again.stats['localhost']['changed'] == 0, again.stats


def test_cron_entry_rendered_and_read_back(tmp_path):
    result = apply_role(tmp_path, KSAMU, upgrade_schedule_backend='cron', upgrade_schedule_environment={'ANSIBLE_FORCE_COLOR': '0'})
    assert result.rc == 0, result
    with open(tmp_path / 'cron.d' / 'clinops-upgrade', encoding='utf-8') as handle:
        lines = [line for line in handle.read().splitlines() if line and not line.startswith('#')]
    assert 'CRON_TZ=Europe/Moscow' in lines and 'ANSIBLE_FORCE_COLOR=0' in lines
    entries = [line for line in lines if '=' not in line.split()[0]]
    assert len(entries) == 1
    fields = entries[0].split(None, 6)
    assert ' '.join(fields[:5]) == '0-59/30 * * * *'
    assert fields[5] == 'clinops'
    command = fields[6]
    assert '100\\%' in command                       # cron reads a bare % as a newline
    words = shlex.split(command.replace('\\%', '%'))
    assert words[:4] == ['cd', '/srv/site repo', '&&', 'flock']
    assert words[6:6 + len(COMMAND)] == COMMAND
    assert words[-3:] == ['>>', '/var/log/clinops-upgrade.log', '2>&1']
    assert not os.listdir(tmp_path / 'systemd')
    again = apply_role(tmp_path, KSAMU, upgrade_schedule_backend='cron', upgrade_schedule_environment={'ANSIBLE_FORCE_COLOR': '0'})
    assert again.rc == 0 and again.stats['localhost']['changed'] == 0, again.stats


def test_no_systemd_here_means_cron_and_absent_removes_it(tmp_path):
    if os.path.isdir('/run/systemd/system'):
        pytest.skip('this machine runs systemd')
    result = apply_role(tmp_path, KSAMU)                           # backend auto
    assert result.rc == 0, result
    assert os.path.isfile(tmp_path / 'cron.d' / 'clinops-upgrade')
    removed = apply_role(tmp_path, KSAMU, upgrade_schedule_state='absent')
    assert removed.rc == 0, removed
    assert not os.path.exists(tmp_path / 'cron.d' / 'clinops-upgrade')


@pytest.mark.parametrize('site, backend, message', [
    (dict(KSAMU, upgrade_schedule={'start': '2026-12-05 22:00', 'period': 'once'}), 'cron', 'period once has no cron form'),
    (dict(KSAMU, upgrade_schedule={'start': '21:00', 'period': '45min'}), 'systemd', '45min does not divide an hour'),
    (dict(KSAMU, upgrade_timezone=''), 'systemd', 'no time zone'),
])
def test_bad_schedules_write_nothing(tmp_path, site, backend, message):
    result = apply_role(tmp_path, site, upgrade_schedule_backend=backend)
    assert result.rc != 0
    assert message in result.stdout
    assert not os.listdir(tmp_path / 'systemd') and not os.listdir(tmp_path / 'cron.d')


def awx_schedule_task():
    with open(os.path.join(ROOT, 'awx', 'configure.yml'), encoding='utf-8') as handle:
        plays = yaml.safe_load(handle)
    tasks = [t for t in plays[0]['tasks'] if 'awx.awx.schedule' in t]
    assert len(tasks) == 1
    return plays[0], tasks[0]


def render_awx_schedule(tmp_path, inventory, now=None):
    """awx/configure.yml's schedule task for a site, with its awx.awx.schedule call replaced by a debug of its arguments."""
    play, task = awx_schedule_task()
    with open(os.path.join(ROOT, 'awx', 'site.example.yml'), encoding='utf-8') as handle:
        site = yaml.safe_load(handle)
    site['awx_site_inventory'] = inventory
    os.makedirs(tmp_path / 'awx', exist_ok=True)
    if not os.path.exists(tmp_path / 'inventories'):
        os.symlink(os.path.join(ROOT, 'inventories'), tmp_path / 'inventories')
    render = dict(task)
    render['ansible.builtin.debug'] = {'msg': render.pop('awx.awx.schedule')}
    rendered = dict(play, vars=dict(play['vars'], **site), tasks=[render])
    if now:
        rendered['vars']['awx_schedule_rrule'] = rendered['vars']['awx_schedule_rrule'].replace(
            'upgrade_schedule(', "upgrade_schedule(now='%s', " % now)
    path = tmp_path / 'awx' / 'render.yml'
    with open(path, 'w', encoding='utf-8') as handle:
        yaml.safe_dump([rendered], handle, sort_keys=False)
    result = run_playbook(str(path))
    assert result.rc == 0, result
    return result.result(task['name'])


def test_awx_schedule_call_matches_the_pinned_awx_collection():
    dummy, task = awx_schedule_task()
    problems, docs = contracts.check([('awx/configure.yml schedule', task)])
    assert problems == []
    assert 'rrule' in docs['awx.awx.schedule']['options']


@pytest.mark.parametrize('inventory, rrule, on_calendar', [
    ('ksamu', 'DTSTART;TZID=Europe/Moscow:20261130T210000 RRULE:FREQ=MINUTELY;INTERVAL=30', '*-*-* *:00/30:00 Europe/Moscow'),
    ('conaktiv', 'DTSTART;TZID=Europe/Berlin:20261205T220000 RRULE:FREQ=MINUTELY;INTERVAL=30', '*-*-* *:00/30:00 Europe/Berlin'),
])
def test_awx_schedule_from_the_sites_inventory(tmp_path, inventory, rrule, on_calendar):
    """The AWX schedule of the example sites, from their inventories' upgrade_schedule, starts what their timer starts."""
    rendered = render_awx_schedule(tmp_path, inventory, now='2026-11-30T12:00:00+03:00')
    args = rendered['msg']
    assert args['rrule'] == rrule
    assert args['unified_job_template'].endswith(' - servers')
    assert args['extra_data'] == {'upgrade_run_trigger': 'schedule'}
    assert args['enabled'] is True
    with open(os.path.join(ROOT, 'inventories', inventory, 'group_vars', 'all', 'main.yml'), encoding='utf-8') as handle:
        site = yaml.safe_load(handle)
    tz = ZoneInfo(site['upgrade_timezone'])
    start = dt.datetime.strptime(rrule.split(':', 1)[1][:15], '%Y%m%dT%H%M%S').replace(tzinfo=tz)
    base = start - dt.timedelta(seconds=1)
    assert rrule_elapses(args['rrule'], base, 8) == systemd_elapses(on_calendar, base, 8)


def test_awx_no_schedule_for_a_site_without_one(tmp_path):
    rendered = render_awx_schedule(tmp_path, 'pmod')
    assert rendered.get('skipped') is True
