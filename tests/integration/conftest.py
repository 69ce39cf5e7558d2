"""Session-wide real servers, started on first use and stopped by PID at the end of the run."""
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
