"""Fixtures for the end-to-end suite: the lab machine, capture servers, and a pgmon project."""

from __future__ import annotations

import secrets
from contextlib import contextmanager

import pytest

from .capture import CaptureServer
from .lab import DOCKER_BRIDGE_IP, Deployment, serve_dashboard_fixture


@pytest.fixture(scope="session")
def discord(lab):
    server = CaptureServer("discord", DOCKER_BRIDGE_IP, f"4242/{secrets.token_hex(16)}")
    yield server
    server.close()


@pytest.fixture(scope="session")
def telegram(lab):
    server = CaptureServer("telegram", DOCKER_BRIDGE_IP, f"4242:{secrets.token_hex(16)}")
    yield server
    server.close()


@pytest.fixture(scope="session")
def dashboard_server():
    server = serve_dashboard_fixture()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="session")
def new_deployment(lab, discord, telegram, dashboard_server, tmp_path_factory):
    """``with new_deployment("folder", site=...) as deployment``: a Deployment in a new project folder, the
    stack an interrupted earlier run left removed first, and its stack removed afterwards."""

    @contextmanager
    def deployment_in(folder: str, **kwargs):
        deployment = Deployment(
            lab, tmp_path_factory.mktemp(folder), discord, telegram, dashboard_server, **kwargs
        )
        deployment.teardown()  # a previous interrupted run must not make this one pass
        try:
            yield deployment
        finally:
            deployment.teardown()

    return deployment_in


@pytest.fixture(scope="module")
def deployment(new_deployment):
    with new_deployment("project") as deployment:
        yield deployment
