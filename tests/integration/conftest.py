"""Session-wide real servers, started on first use and stopped by PID at the end of the run; the order the parallel run
hands the test files to its workers in (longest first on each worker)."""
import collections
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "build", "collections"))

import servers  # noqa: E402  pylint: disable=wrong-import-position


@pytest.fixture(scope='session')
def postgres_server():
    with servers.PostgresServer() as server:
        yield server


@pytest.fixture(scope='session')
def mariadb_server():
    with servers.MariaDBServer() as server:
        yield server


@pytest.fixture(scope='session')
def firebird_server():
    with servers.FirebirdServer() as server:
        yield server


def pytest_configure(config):
    config.addinivalue_line('markers', 'serial: runs alone, after the parallel run (it looks at or stops processes it did not '
                                       'start, e.g. every Orthanc on the machine)')


def pytest_sessionfinish(session, exitstatus):
    """Under CI a skipped integration test is a failure: every real part must have run."""
    reporter = session.config.pluginmanager.get_plugin('terminalreporter')
    skipped = len(reporter.stats.get('skipped', [])) if reporter else 0
    if os.environ.get('CI') and skipped and exitstatus == 0:
        reporter.write_line('CI: %d integration test(s) skipped; every suite must run here' % skipped, red=True)
        session.exitstatus = 1


# Rough seconds per test on CI's two cores for the files whose tests take long (a lab built, whole upgrades run, countdowns
# waited for); any other test counts DEFAULT_SECONDS.  Only the order of the parallel run depends on them (never a result):
# refresh them from `pytest --durations=0` when a file grows or shrinks a lot.
SECONDS_PER_TEST = {
    'test_molecule.py': 150, 'test_faults.py': 90, 'test_awx_runner.py': 200, 'test_upgrade_variants.py': 180,
    'test_upgrade_ssh.py': 150, 'test_galaxy_install.py': 150, 'test_tutorial.py': 120, 'test_windows_site.py': 120,
    'test_conaktiv.py': 120, 'test_upgrade_limits.py': 100, 'test_ksamu.py': 90, 'test_imageserver.py': 80,
    'test_upgrade_e2e.py': 80, 'test_upgrade_notify.py': 60, 'test_upgrade_unreachable.py': 60,
    'test_execution_environment.py': 60, 'test_report_browser.py': 60, 'test_secrets.py': 40, 'test_window_guard.py': 30,
    'test_site_examples.py': 20, 'test_windows_playbook.py': 130, 'test_preflight_probes.py': 90,
}
DEFAULT_SECONDS = 8


def worksteal_order(files, workers):
    """The files' tests in the order that hands each of ``workers`` workers an equal share of the estimated time, its
    longest files first.  ``files`` is a list of (name, [tests]) in collection order.

    pytest-xdist's worksteal hands worker k the next len(pending) // (workers - k) tests of the list, then lets an idle
    worker take the second half of the longest queue's remaining tests.  So each share is filled to exactly that count:
    the long files are dealt first, each to the share with the least time so far (a file is kept whole, so that its
    module-scoped lab is built once), then the short ones; the tests that a worker may lose to another are its last,
    short ones.
    """
    total = sum(len(f[1]) for f in files)
    room = []
    left = total
    for k in range(workers):
        room.append(left // (workers - k))
        left -= room[-1]
    shares = [[] for k in range(workers)]
    loads = [0] * workers
    weighted = sorted(files, key=lambda f: -SECONDS_PER_TEST.get(f[0], DEFAULT_SECONDS) * len(f[1]))  # stable: ties keep order
    for name, tests in weighted:
        tests = list(tests)
        per_test = SECONDS_PER_TEST.get(name, DEFAULT_SECONDS)
        while tests:
            fits = [k for k in range(workers) if room[k] >= len(tests)]
            if fits:
                k = min(fits, key=lambda i: loads[i])
            else:       # too many tests for any share's room: split the file over the roomiest shares
                k = max(range(workers), key=lambda i: room[i])
            part, tests = tests[:room[k]], tests[room[k]:]
            shares[k].extend(part)
            room[k] -= len(part)
            loads[k] += per_test * len(part)
    return [test for share in shares for test in share]


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    """In the workers of ``-n N`` (make integration: ``--dist worksteal``), reorder what is left after -m/-k (see
    worksteal_order; a worker sees ``--dist`` as "no", and the order does no harm to the other modes)."""
    workers = int(os.environ.get('PYTEST_XDIST_WORKER_COUNT') or 0)
    if workers < 2:
        return
    files = collections.OrderedDict()
    for item in items:
        files.setdefault(item.path.name, []).append(item)
    items[:] = worksteal_order(list(files.items()), workers)
