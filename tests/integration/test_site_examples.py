"""The example site inventories (inventories/<product>) and the top-level upgrade.yml, as a site uses them.

For each example: ``ansible-inventory --graph`` (group_vars and the vault decrypted with the example's password),
``ansible-playbook upgrade.yml --syntax-check``, and the example's secrets are kept encrypted on disk.
"""
import json
import os
import subprocess
import sys

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, 'inventories')
VAULT_PASSWORD = os.path.join(EXAMPLES, 'example-vault-password.txt')
SITES = ('pmod', 'imageserver', 'conaktiv', 'ksamu', 'example-windows')


def run(argv):
    """As a user runs it from the checkout: no ANSIBLE_* in the environment, the top-level ansible.cfg found in cwd."""
    env = dict((k, v) for k, v in os.environ.items() if not k.startswith('ANSIBLE_'))
    env['PATH'] = os.path.dirname(sys.executable) + os.pathsep + env.get('PATH', '')
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_every_product_has_an_example_site():  # and the all-Windows example (a PMOD site)
    assert sorted(n for n in os.listdir(EXAMPLES) if os.path.isdir(os.path.join(EXAMPLES, n))) == sorted(SITES)
    for site in SITES:
        with open(os.path.join(EXAMPLES, site, 'group_vars', 'all', 'main.yml'), encoding='utf-8') as handle:
            profile = yaml.safe_load(handle)['upgrade_profile']
        assert os.path.isfile(os.path.join(ROOT, 'profiles', profile + '.yml')), (site, profile)


@pytest.mark.parametrize('site', SITES)
def test_example_inventory_graph_and_vault(site):
    inventory = os.path.join('inventories', site)
    graph = run(['ansible-inventory', '-i', inventory, '--graph', '--vault-password-file', VAULT_PASSWORD])
    assert graph.returncode == 0, graph.stderr
    assert '@servers:' in graph.stdout and '@clients:' in graph.stdout
    listing = run(['ansible-inventory', '-i', inventory, '--list', '--vault-password-file', VAULT_PASSWORD])
    assert listing.returncode == 0, listing.stderr
    data = json.loads(listing.stdout)
    hostvars = data['_meta']['hostvars']
    variables = hostvars[data['servers']['hosts'][0]]
    # the secrets come from the vault, decrypted with the example's password, and are nowhere in clear on disk
    assert variables['vault_winrm_password'] == 'example-winrm-password'
    assert variables['upgrade_notify_smtp_password'] == '{{ vault_smtp_password }}'
    windows = [h for h, v in hostvars.items() if v.get('ansible_connection') == 'winrm']
    assert windows, 'every example has Windows hosts'
    for host in windows:
        # the AWX job's WinRM credential (environment, awx/configure.yml) first, else the vault
        assert hostvars[host]['ansible_password'] == "{{ lookup('ansible.builtin.env', 'CLINOPS_WINRM_PASSWORD') or vault_winrm_password }}"
        assert 'CLINOPS_WINRM_USER' in hostvars[host]['ansible_user']
        assert hostvars[host]['ansible_winrm_server_cert_validation'] == 'validate'
    for base, dummy, files in os.walk(os.path.join(EXAMPLES, site)):
        for name in files:
            with open(os.path.join(base, name), encoding='utf-8') as handle:
                assert 'example-winrm-password' not in handle.read(), name
    # without the vault password the inventory cannot be read: the secrets really are encrypted
    locked = run(['ansible-inventory', '-i', inventory, '--list'])
    assert locked.returncode != 0 and 'vault' in locked.stderr.lower()


@pytest.mark.parametrize('site', SITES)
def test_top_level_playbook_syntax_with_example(site):
    proc = run(['ansible-playbook', 'upgrade.yml', '-i', os.path.join('inventories', site), '--syntax-check',
                '--vault-password-file', VAULT_PASSWORD])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'playbook: upgrade.yml' in proc.stdout


def test_the_windows_example_reaches_every_host_as_a_windows_host():
    """inventories/example-windows: each way to reach a Windows host (WinRM with Kerberos, NTLM, CredSSP; SSH with
    PowerShell), each one a Windows host for the action plugins' shared decision, WinRM over HTTPS with validation."""
    from ansible_collections.clinops.upgrade.plugins.plugin_utils.host_os import host_os  # pylint: disable=import-outside-toplevel
    listing = run(['ansible-inventory', '-i', os.path.join('inventories', 'example-windows'), '--list',
                   '--vault-password-file', VAULT_PASSWORD])
    assert listing.returncode == 0, listing.stderr
    hostvars = json.loads(listing.stdout)['_meta']['hostvars']
    assert len(hostvars) == 5
    transports = {}
    for host, variables in hostvars.items():
        assert host_os(variables) == 'windows', host
        assert host_os(dict((k, v) for k, v in variables.items() if k != 'clinops_upgrade_host_os'),
                       type('Connection', (), {'transport': variables['ansible_connection']})()) == 'windows', host
        assert variables['upgrade_install_root'].startswith('C:\\')
        if variables['ansible_connection'] == 'winrm':
            assert (variables['ansible_port'], variables['ansible_winrm_scheme']) == (5986, 'https')
            assert variables['ansible_winrm_server_cert_validation'] == 'validate'
            transports[variables['ansible_winrm_transport']] = host
        else:
            assert (variables['ansible_connection'], variables['ansible_shell_type']) == ('ssh', 'powershell')
            assert 'ansible_password' not in variables  # a key: no password for sshpass
    assert sorted(transports) == ['credssp', 'kerberos', 'ntlm']
