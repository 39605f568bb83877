"""The demo end to end, as its README section promises: one command deploys it and says how to log in,
every panel of every dashboard has data, an incident reaches the alert sink in Discord's and Telegram's
formats and resolves there, a re-run changes nothing, and uninstall.py leaves nothing of it.

It runs the lab's builds (no registry here): ``pgmon_images`` as every suite, and the PostgreSQL 17 and
busybox images built here as the demo's own. The tests in this module run in file order.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest
import requests

from tasks.demo.config import (
    BASE_DIR,
    EXTRAS_DIR,
    GRAFANA_PASSWORD,
    GRAFANA_PORT,
    POSTGRES,
    PROJECT,
    PROMETHEUS_PORT,
    SECRET_NAMES,
    SECRETS_DIR,
    SINK_PORT,
)
from tasks.render.grafana import provisioned_dashboard_uids

from .capture import Received
from .grafana_queries import Dashboard, Prometheus, wait_for_every_panel
from .lab import DASHBOARD_FIXTURE, TESTED_IMAGES, Project, prometheus_query, run, wait_until
from .test_deploy import assert_ok, changed_operations, verification_lines

pytestmark = pytest.mark.e2e

DEMO_IMAGES = {"postgres": "pgmon-test/postgresql:17", "busybox": "pgmon-test/busybox:1.35"}
SINK = f"http://127.0.0.1:{SINK_PORT}"
SCRAPE_SECONDS = 5  # the demo's (tasks/demo.py)
PICKS = {"server": f"{POSTGRES}:5432", "database": "demo", "instance": "demo"}
DEMO_POSTGRESQL = int(DEMO_IMAGES["postgres"].rsplit(":", 1)[1])  # panels of newer versions say so


def remove_demo() -> None:
    """What a run of the demo may have left on the machine, removed without pgmon."""
    for project in (f"{PROJECT}-extras", PROJECT):
        run(
            "docker", "compose", "-p", project, "down", "--volumes", "--remove-orphans", check=False
        )
    run("rm", "-rf", BASE_DIR, EXTRAS_DIR)


def leftovers() -> list[str]:
    """Every container, volume, network and folder of the demo on the machine."""
    found = []
    for kind in ("container", "volume", "network"):
        listing = "ps -a" if kind == "container" else f"{kind} ls"
        names = run(
            "docker",
            *listing.split(),
            "--format",
            "{{.Names}}" if kind == "container" else "{{.Name}}",
        )
        found += [f"{kind} {name}" for name in names.stdout.split() if name.startswith(PROJECT)]
    labelled = run("docker", "ps", "-a", "--filter", "label=pgmon.demo", "--format", "{{.Names}}")
    found += [f"container {name} (labelled)" for name in labelled.stdout.split()]
    return found + [f"folder {path}" for path in (BASE_DIR, EXTRAS_DIR) if Path(path).exists()]


@pytest.fixture(scope="module")
def demo(lab, dashboard_server, tmp_path_factory):
    """A project folder with the lab's inventory and the images and dashboard source every suite uses."""
    project = Project(tmp_path_factory.mktemp("demo-project"), {})
    project.write(
        lab.inventory_source(),
        {
            "pgmon_images": TESTED_IMAGES,
            "pgmon_dashboard_9628": {
                "url": dashboard_server + "/api/dashboards/9628/revisions/{revision}/download",
                "sha256": hashlib.sha256(DASHBOARD_FIXTURE.read_bytes()).hexdigest(),
            },
        },
    )
    remove_demo()  # an interrupted earlier run must not make this one pass
    yield project
    remove_demo()


def run_demo(project: Project, *args: str) -> str:
    # On the demo's command line: group_data's pgmon_* keys are the deploy's, which knows no demo images.
    images = ("--data", f"pgmon_demo_images={json.dumps(DEMO_IMAGES)}")
    return assert_ok(project.pyinfra(*args, *images, deploy="demo.py"))


def secret(name: str) -> str:
    return Path(EXTRAS_DIR, SECRETS_DIR, name).read_text()


def grafana(path: str) -> requests.Response:
    """Grafana over HTTPS, trusting only the certificate the demo made on the host."""
    return requests.get(
        f"https://127.0.0.1:{GRAFANA_PORT}{path}",
        auth=("admin", secret(GRAFANA_PASSWORD)),
        verify=f"{BASE_DIR}/grafana/tls/self-signed.crt",
        timeout=10,
    )


def received() -> list[Received]:
    """The alert sink's messages, from its text listing: ``path`` holds the channel."""
    response = requests.get(f"{SINK}/cgi-bin/messages", timeout=10)
    response.raise_for_status()
    messages = []
    for line in response.text.splitlines():
        _, channel, body = line.split(" ", 2)
        messages.append(Received(channel, json.loads(body), time.monotonic()))
    return messages


def in_both_channels(alert: str, status: str, timeout: float) -> dict[str, Received]:
    """The first message per channel naming ``alert`` in ``status`` (FIRING, RESOLVED) for the database."""

    def found():
        matches = {}
        for message in received():
            if alert in message.text and "demo" in message.text and f"[{status}" in message.text:
                matches.setdefault(message.path, message)
        return matches if set(matches) == {"discord", "telegram"} else None

    return wait_until(f"{alert} {status} at the sink in both formats", found, timeout, interval=1)


def test_one_command_deploys_the_demo_and_says_how_to_log_in(demo):
    started = time.monotonic()
    output = run_demo(demo, "-vvv", "--diff")
    print(f"\nfirst deploy of the demo: {time.monotonic() - started:.0f}s")
    assert verification_lines(output)["demo"].startswith("ok"), output[-3000:]
    assert f"Grafana     https://127.0.0.1:{GRAFANA_PORT}/" in output
    assert f"sudo cat {EXTRAS_DIR}/{SECRETS_DIR}/{GRAFANA_PASSWORD}" in output
    assert f"http://127.0.0.1:{SINK_PORT}/" in output
    for name in SECRET_NAMES:  # made on the host, kept root's only, never printed (-vvv --diff)
        path = Path(EXTRAS_DIR, SECRETS_DIR, name)
        assert (path.stat().st_mode & 0o777, path.stat().st_uid) == (0o600, 0)
        assert secret(name) not in output
    assert grafana("/api/user").json()["login"] == "admin"
    names = run("docker", "ps", "--filter", "label=pgmon.demo=true", "--format", "{{.Names}}")
    assert sorted(names.stdout.split()) == [
        "pgmon-demo-alert-sink",
        "pgmon-demo-postgres",
        "pgmon-demo-workload",
    ]
    assert "pgmon demo: alerts received" in requests.get(SINK + "/", timeout=10).text


def test_every_panel_of_every_dashboard_has_data(demo):
    # The workload seen and rated: its writes by the recording rules, its report's session and lock.
    workload = (
        'table:pg_stat_user_tables_n_tup_del:rate{database="demo", relname="cart_items"} > 0 '
        "and on (database) database:pg_stat_database_xact:rate > 0"
    )
    wait_until(
        "the demo's workload rated by the recording rules",
        lambda: prometheus_query(workload, port=PROMETHEUS_PORT),
        180,
        interval=2,
    )
    dashboards = {}
    for uid in provisioned_dashboard_uids():
        response = grafana(f"/api/dashboards/uid/{uid}")
        assert response.status_code == 200, (uid, response.text)
        dashboards[uid] = response.json()["dashboard"]

    def empty_panels() -> dict[str, list[str]]:
        prometheus = Prometheus(PROMETHEUS_PORT)
        return {
            uid: lines
            for uid, model in dashboards.items()
            if (
                lines := Dashboard(model, prometheus, SCRAPE_SECONDS).empty_panels(
                    PICKS, DEMO_POSTGRESQL
                )
            )
        }

    wait_for_every_panel(empty_panels, 120, interval=5)
    assert len(dashboards) >= 3


def test_an_incident_reaches_the_sink_in_both_formats_and_resolves(demo):
    started = time.monotonic()
    output = run_demo(demo, "--data", "pgmon_demo_incident=start")
    assert f"pgmon demo: {POSTGRES} stopped" in output
    assert run("docker", "inspect", "-f", "{{.State.Running}}", POSTGRES).stdout.strip() == "false"
    firing = in_both_channels("PostgresDown", "FIRING", 120)
    print(
        f"\nPostgresDown at the sink {time.monotonic() - started:.0f}s after the incident started"
    )
    assert "CRITICAL" in firing["telegram"].text
    assert "chat_id" in firing["telegram"].body and firing["discord"].body.get("embeds")
    page = requests.get(SINK + "/", timeout=10).text
    assert page.count("PostgresDown") >= 2

    again = run_demo(demo, "--data", "pgmon_demo_incident=start")
    assert changed_operations(again) == []  # already stopped

    ended = time.monotonic()
    output = run_demo(demo, "--data", "pgmon_demo_incident=end")
    assert f"pgmon demo: {POSTGRES} started" in output
    in_both_channels("PostgresDown", "RESOLVED", 120)
    print(
        f"PostgresDown resolved at the sink {time.monotonic() - ended:.0f}s after the incident ended"
    )


def test_a_real_deploy_beside_it_neither_touches_it_nor_needs_it(demo, new_deployment):
    containers = run("docker", "ps", "-q", "--filter", "label=pgmon.demo=true").stdout.split()
    with new_deployment("beside-the-demo") as real:
        real.configure(["shop"])
        assert verification_lines(assert_ok(real.run()))["shop"].startswith("ok")
    # Deployed and removed again (the fixture's teardown): the demo's containers are the same ones.
    assert (
        run("docker", "ps", "-q", "--filter", "label=pgmon.demo=true").stdout.split() == containers
    )


def test_a_rerun_changes_nothing(demo):
    containers = run("docker", "ps", "-q", "--filter", "label=pgmon.demo=true").stdout.split()
    output = run_demo(demo)
    assert changed_operations(output) == []
    assert (
        run("docker", "ps", "-q", "--filter", "label=pgmon.demo=true").stdout.split() == containers
    )
    assert verification_lines(output)["demo"].startswith("ok")


def test_uninstall_leaves_nothing_of_the_demo(demo):
    assert leftovers()  # it is there to remove
    assert_ok(demo.pyinfra(deploy="uninstall.py"))
    assert leftovers() == []
    assert changed_operations(assert_ok(demo.pyinfra(deploy="uninstall.py"))) == []
    incident = demo.pyinfra("--data", "pgmon_demo_incident=start", deploy="demo.py")
    assert incident.returncode != 0
    assert "the demo is not deployed on this host" in incident.stdout + incident.stderr
