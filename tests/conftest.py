"""What every test directory shares: the lab machine, and how tests/run's workers divide the suite."""

import pytest

from tests.e2e.lab import Lab


@pytest.fixture(scope="session")
def lab():
    """The machine's services (Docker engine, PostgreSQL, sshd), started where they do not run yet."""
    machine = Lab()
    machine.up()
    yield machine
    machine.down()


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups
def pytest_collection_modifyitems(items):
    # The end-to-end tests share one lab (PostgreSQL clusters, published ports, the test hosts' network):
    # one worker runs all of them, in the order they were collected, the other the rest meanwhile.
    for item in items:
        if item.get_closest_marker("e2e"):
            item.add_marker(pytest.mark.xdist_group("e2e"))
