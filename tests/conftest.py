"""What every test directory shares: the lab machine, and how tests/run's workers divide the suite."""

import pytest

from tests.e2e.lab import Lab


@pytest.fixture(scope="session")
def lab(request):
    """The machine's services (Docker engine, PostgreSQL, sshd), started where they do not run yet."""
    machine = Lab()
    machine.up()
    request.config.pgmon_lab_used = True
    yield machine
    if not _xdist_in_use(request.config):
        machine.down()


def _xdist_in_use(config) -> bool:
    return hasattr(config, "workerinput") or bool(config.getoption("numprocesses", None))


def pytest_testnodedown(node, error):
    # A worker says whether it used the lab (pytest_sessionfinish below, on that worker).
    if getattr(node, "workeroutput", {}).get("pgmon_lab_used"):
        node.config.pgmon_lab_used = True


def pytest_sessionfinish(session):
    config = session.config
    if hasattr(config, "workerinput"):
        config.workeroutput["pgmon_lab_used"] = getattr(config, "pgmon_lab_used", False)
    # Under xdist each worker's lab may be the one that started a service the other still uses: the
    # controller stops what any of them started, once both are done; a session whose workers never used
    # the lab (unit tests only) leaves alone one that another session is using.
    elif _xdist_in_use(config) and getattr(config, "pgmon_lab_used", False):
        Lab().down(everything=True)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups
def pytest_collection_modifyitems(items):
    # The lab's end-to-end tests share its PostgreSQL clusters, published ports and stack: one worker runs
    # them all, in the order they were collected. The tests on test hosts (tests/hosts) use only the lab's
    # engine, each host its own network and engine: the other worker runs them meanwhile, then the unit
    # tests. Nothing may stop the lab's engine while both run (its restart is proven on a test host).
    for item in items:
        if item.get_closest_marker("test_hosts"):
            item.add_marker(pytest.mark.xdist_group("test_hosts"))
        elif item.get_closest_marker("e2e"):
            item.add_marker(pytest.mark.xdist_group("e2e"))
