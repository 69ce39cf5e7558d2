"""The HTML report in a real browser, and the progress callback's lines, from one real lab run (issue #18).

One lab (lab/build_lab.py: server1, client1..client3) is upgraded once by a real ansible-playbook with the usual text
output and the collection's progress callback enabled: client1 fails (its staging folder is taken by a file), client2 is
off (its inventory entry connects over SSH to a loopback port where nothing listens). Debian's headless Chromium, driven
by chromedriver through selenium, opens the report that run wrote (file://), finds every host and every step label in
the rendered page, and reads the browser's log: no error. Screenshots are saved under tests/output/report-browser/.
A synthetic report of 300 hosts (the real run's JSON multiplied) is rendered by the role's template, and must load and
stay within a sane size.
"""
# pylint: disable=redefined-outer-name
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest

from labtools import ENV, PLAYBOOK, ROOT, Lab  # noqa: E402  pylint: disable=wrong-import-position
import build_lab  # noqa: E402  pylint: disable=wrong-import-position,import-error
import procs  # noqa: E402  pylint: disable=wrong-import-position,import-error
from harness import ansible_env, run_playbook  # noqa: E402  pylint: disable=wrong-import-position

CHROMIUM = '/usr/bin/chromium'
CHROMEDRIVER = '/usr/bin/chromedriver'
OUTPUT = os.path.join(ROOT, 'tests', 'output', 'report-browser')
TEMPLATE = os.path.join(ROOT, 'roles', 'upgrade_report', 'templates', 'report.html.j2')
MAX_BYTES_300 = 6 * 1024 * 1024

webdriver = pytest.importorskip('selenium.webdriver')
if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
    pytest.skip('Debian chromium and chromium-driver are needed', allow_module_level=True)


@pytest.fixture(scope='module')
def lab_run(tmp_path_factory):
    """The lab upgraded once with the text output and the progress callback: (Lab, stdout, report's JSON path)."""
    root = str(tmp_path_factory.mktemp('report') / 'lab')
    inventory = build_lab.build(root, clients=3, servers=1, rows=500, quiet=True)
    lab = Lab(root, inventory)
    try:
        with open(lab.install('client1') + '_staging', 'w', encoding='ascii') as handle:
            handle.write('in the way\n')
        lab.inv['all']['children']['clients']['hosts']['client2'].update(
            ansible_connection='ssh', ansible_host='127.0.0.1', ansible_port=procs.free_port(), ansible_user='root',
            ansible_ssh_common_args='-o ConnectTimeout=5 -o ControlMaster=no')
        lab.write_inventory()
        env = ansible_env(dict(ENV, ANSIBLE_STDOUT_CALLBACK='default', ANSIBLE_CALLBACKS_ENABLED='clinops.upgrade.progress'))
        cmd = [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), '-i', inventory, PLAYBOOK,
               '-e', 'upgrade_run_id=browser']
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=1200, check=False)
        assert proc.returncode != 0, proc.stdout[-3000:]        # client1 failed: the report play fails the run
        report = os.path.join(root, 'reports', 'upgrade-browser.json')
        assert os.path.isfile(report), proc.stdout[-3000:] + proc.stderr[-3000:]
        yield lab, proc.stdout, report
    finally:
        build_lab.teardown(root, quiet=True)


@pytest.fixture(scope='module')
def browser():
    """Headless Chromium from Debian with a fresh profile, nothing fetched in the background."""
    from selenium.webdriver.chrome.service import Service  # pylint: disable=import-outside-toplevel
    profile = tempfile.mkdtemp(prefix='clinops-chromium-')
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
                '--disable-component-update', '--disable-sync', '--no-first-run', '--user-data-dir=' + profile,
                '--window-size=1400,1000'):
        options.add_argument(arg)
    options.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
    # chromium and its crash handler keep their files under HOME / XDG folders: the fresh profile folder, not root's
    env = dict(os.environ, HOME=profile, XDG_CONFIG_HOME=profile, XDG_CACHE_HOME=profile)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER, env=env), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def load(driver, path, shot):
    """Open the report, return the browser's log of that load; save a full-page screenshot under tests/output."""
    driver.get_log('browser')  # what an earlier page logged
    driver.get('file://' + path)
    assert driver.execute_script('return document.readyState') == 'complete'
    height = driver.execute_script('return document.documentElement.scrollHeight')
    driver.set_window_size(1400, max(800, min(height, 12000)))
    os.makedirs(OUTPUT, exist_ok=True)
    driver.save_screenshot(os.path.join(OUTPUT, shot))
    assert os.path.getsize(os.path.join(OUTPUT, shot)) > 10000
    return driver.get_log('browser')


def steps_of(row):
    """The step labels a host's row must show: its journal's finished steps, begin and finish left out."""
    return [e['step'] for e in row['steps'] if e.get('ended') and e['result'] != 'started' and e['step'] not in ('begin', 'finish')]


def test_progress_lines_appear_in_the_lab_run(lab_run):
    out = lab_run[1]
    lines = [line for line in out.splitlines() if line.startswith('[progress] ')]
    assert '[progress] client2 (client): not reached' in '\n'.join(lines)
    for step in ('stage', 'configure', 'migrate_pre', 'stop', 'backup', 'swap', 'prefs', 'migrate_offline', 'start', 'verify',
                 'restart_after_verify', 'migrate_post', 'cleanup'):
        assert any(re.match(r'\[progress\] server1: %s ok \d+\.\d s$' % step, line) for line in lines), step
    assert any(re.match(r'\[progress\] server1 \(server\): upgraded 4\.3\.0 -> 4\.4\.0, downtime \d+\.\d s$', line) for line in lines)
    assert any(re.match(r'\[progress\] client1: stage failed .*PMOD_staging', line) for line in lines)
    assert any(line.startswith('[progress] client3 (client): upgraded 4.3.0 -> 4.4.0') for line in lines)
    assert any(re.match(r"\[progress\] Upgrade the servers, one at a time: hosts done 1/1, failed 0, held back 0, not reached 0, "
                        r"servers' downtime so far \d+\.\d s$", line) for line in lines)
    assert any(line.startswith('[progress] Upgrade the clients, in batches, after their servers: hosts done 2/3, failed 1')
               for line in lines)
    assert re.search(r"^\[progress\] the run: hosts done 4/4, failed 1, held back 0, not reached 1, servers' downtime so far",
                     lines[-1]), lines[-1]


def test_the_report_of_the_lab_run_in_chromium(lab_run, browser):
    lab, report_json = lab_run[0], lab_run[2]
    from selenium.webdriver.common.by import By  # pylint: disable=import-outside-toplevel
    with open(report_json, encoding='utf-8') as handle:
        report = json.load(handle)
    html = report_json[:-len('.json')] + '.html'
    with open(html, encoding='utf-8') as handle:
        text = handle.read()
    assert not re.search(r'(src|href)=["\']?(https?:)?//', text)     # self-contained: nothing fetched
    log = load(browser, html, 'lab-report.png')
    assert [e for e in log if e['level'] in ('SEVERE', 'WARNING')] == [], log

    # it opens with the outcome per site
    assert browser.find_element(By.TAG_NAME, 'h2').text == 'Outcome per site'
    outcome = browser.find_element(By.CSS_SELECTOR, 'table.outcome').text
    assert re.search(r'^lab 2 1 1 4 server1 \d', outcome.splitlines()[-1]), outcome   # upgraded, failed, not reached
    assert 'client1 (failed), client2 (not reached)' in browser.find_element(By.CSS_SELECTOR, '.todo').text

    # every host has a row, failed first, then the server, then the clients in natural order
    rows = [el.get_attribute('data-host') for el in browser.find_elements(By.CSS_SELECTOR, '.timeline .row')]
    assert rows == ['client1', 'server1', 'client3', 'client2'], rows
    for row in report['hosts']:
        el = browser.find_element(By.CSS_SELECTOR, '.timeline .row[data-host="%s"]' % row['host'])
        assert el.is_displayed() and row['host'] in el.text
        labels = [s.text.split(' ')[0] for s in el.find_elements(By.CSS_SELECTOR, '.steps .st')]
        assert labels == steps_of(row), (row['host'], labels)
        bars = [b.get_attribute('data-step') for b in el.find_elements(By.CSS_SELECTOR, '.bar')]
        assert bars == steps_of(row)
        for label in el.find_elements(By.CSS_SELECTOR, '.steps .st'):
            assert label.is_displayed() and label.size['width'] > 0
    server_steps = steps_of({h['host']: h for h in report['hosts']}['server1'])
    assert [s for s in server_steps if s in ('stage', 'configure', 'migrate_pre', 'stop')] == ['stage', 'configure', 'migrate_pre', 'stop']
    assert server_steps[0] == 'stage' and server_steps.index('stop') < server_steps.index('swap') < server_steps.index('start')
    # the axis has ticks, the server's downtime is shaded on its row and its clients' rows
    assert len(browser.find_elements(By.CSS_SELECTOR, '.axis .tick')) >= 3
    assert len(browser.find_elements(By.CSS_SELECTOR, '.row[data-host="server1"] .down.own')) == 1
    assert len(browser.find_elements(By.CSS_SELECTOR, '.row[data-host="client3"] .down')) == 1
    # hover text: the step, its duration and its message
    failed = browser.find_element(By.CSS_SELECTOR, '.row[data-host="client1"] .bar[data-step="stage"]')
    assert re.match(r'client1: stage failed, \d+\.\d\d s - .*PMOD_staging', failed.get_attribute('title'))
    # the details: backup file and checksum, migrations per phase, settings, checks
    details = browser.find_element(By.ID, 'h-server1').text
    backup = [e['data']['backup_path'] for e in lab.journal('server1') if e['step'] == 'backup' and e['result'] == 'ok'][0]
    assert backup in details and re.search(r'sha256 [0-9a-f]{64}', details)
    assert 'pre: 4.3.1; offline: 4.3.2; post: 4.4.0' in details
    assert 'kept from the old version' in details and 'license.seats' in details and 'legacy.viewer' in details
    # each health check with what the node answered (the journal's verify entry), its time, in the page as in the journal
    verify = [e for e in lab.journal('server1') if e['step'] == 'verify' and e['result'] == 'ok'][-1]['data']['checks']
    assert [c['name'] for c in verify] == ['Echo TS', 'Echo DB', 'C-ECHO to the DICOM server']
    answers = {el.get_attribute('data-check'): el for el in browser.find_elements(By.CSS_SELECTOR, '#h-server1 .check')}
    assert sorted(answers) == sorted(c['name'] for c in verify)
    for check in verify:
        shown = answers[check['name']]
        assert shown.find_element(By.CSS_SELECTOR, '.answer').text == check['answer'] and shown.is_displayed()
        assert re.search(r', \d+\.\d\d s', shown.text), shown.text
    assert re.match(r'^OK PMOD-TS 4\.4\.0', answers['Echo TS'].find_element(By.CSS_SELECTOR, '.answer').text)
    assert re.match(r'^C-ECHO status 0x0000 \(Success\) from \S+@127\.0\.0\.1:\d+ as CLINOPS_UPG',
                    answers['C-ECHO to the DICOM server'].find_element(By.CSS_SELECTOR, '.answer').text)
    client = {el.get_attribute('data-check'): el.find_element(By.CSS_SELECTOR, '.answer').text
              for el in browser.find_elements(By.CSS_SELECTOR, '#h-client3 .check')}
    assert re.match(r'^connection accepted by 127\.0\.0\.1:\d+$', client['Transaction server reachable']), client
    assert client['Echo TS from the client'].startswith('OK PMOD-TS'), client
    # the Markdown report lists the same answers
    with open(report_json[:-len('.json')] + '.md', encoding='utf-8') as handle:
        markdown = handle.read()
    assert '- Echo TS (command): `%s`, ' % answers['Echo TS'].find_element(By.CSS_SELECTOR, '.answer').text in markdown
    assert 'Connection refused' in browser.find_element(By.ID, 'h-client2').text


def synthetic(report, hosts=300, batch=25):
    """The real run's report multiplied: server1 as it ran, then clients client1..client<hosts-1> copied from the
    upgraded client (a few failed and rolled back, a few not reached), in batches of ``batch``."""
    rows = {h['host']: h for h in report['hosts']}
    data = copy.deepcopy(report)
    data['hosts'] = [rows['server1']]
    for number in range(1, hosts):
        if number % 97 == 0:
            row = copy.deepcopy(rows['client1'])
        elif number % 41 == 0:
            row = copy.deepcopy(rows['client2'])
        else:
            row = copy.deepcopy(rows['client3'])
        row['host'] = 'client%d' % number
        row['batch'] = (number - 1) // batch + 1 if row['result'] != 'not_reached' else None
        data['hosts'].append(row)
    data['still_to_do'] = [h['host'] for h in data['hosts'] if h['result'] not in ('upgraded', 'current')]
    return data


def test_a_300_host_report_loads_and_stays_small(lab_run, browser, tmp_path):
    report_json = lab_run[2]
    from selenium.webdriver.common.by import By  # pylint: disable=import-outside-toplevel
    with open(report_json, encoding='utf-8') as handle:
        data = synthetic(json.load(handle))
    src = str(tmp_path / 'big.json')
    with open(src, 'w', encoding='utf-8') as handle:
        json.dump(data, handle)
    dest = str(tmp_path / 'big.html')
    play = [{'name': 'render', 'hosts': 'localhost', 'gather_facts': False, 'tasks': [
        {'ansible.builtin.include_vars': {'file': src, 'name': 'upgrade_report_data'}},
        {'ansible.builtin.template': {'src': TEMPLATE, 'dest': dest, 'mode': '0600'}}]}]
    result = run_playbook(play)
    assert result.rc == 0, result
    size = os.path.getsize(dest)
    assert size < MAX_BYTES_300, size
    log = load(browser, dest, 'report-300-hosts.png')
    assert [e for e in log if e['level'] in ('SEVERE', 'WARNING')] == [], log
    rows = [el.get_attribute('data-host') for el in browser.find_elements(By.CSS_SELECTOR, '.timeline .row')]
    assert len(rows) == 300 and len(set(rows)) == 300
    assert rows.index('client2') < rows.index('client10') < rows.index('client100')      # natural order
    assert rows[:3] == ['client97', 'client194', 'client291'] and rows[3] == 'server1'   # failed first, then the server
    groups = [s.text for s in browser.find_elements(By.CSS_SELECTOR, 'details.group > summary')]
    assert groups[2].startswith('Clients, batch 1 (25: ') and any(g.startswith('Clients, batch 12 (') for g in groups), groups
    assert groups[-1].startswith('Clients not in a batch of this run (7: 7 not reached)'), groups
    # batches with nothing wrong are folded; the browser opens them all before printing
    closed = browser.execute_script("return document.querySelectorAll('details.group:not([open])').length")
    assert closed > 0
    browser.execute_script("window.dispatchEvent(new Event('beforeprint'))")
    assert browser.execute_script("return document.querySelectorAll('details.group:not([open])').length") == 0
