import pytest

import tasks.stack_containers
from tasks.host_state import Container, Entry, parse_state
from tasks.render import render_stack
from tasks.settings import build_settings
from tasks.stack_containers import action_command, compose_up, plan_containers
from tasks.stack_files import plan_files

from .conftest import ENVIRON, HostExecuting, group_data


def host_entries(stack) -> dict[str, Entry]:
    """The entries a host would report after the stack was written exactly."""
    entries = {d.path: Entry("d", d.mode, d.uid, d.gid) for d in stack.directories}
    entries.update({f.path: Entry("f", f.mode, f.uid, f.gid, f.sha256) for f in stack.files})
    return entries


def test_unchanged_host_needs_nothing(settings, dashboard_9628):
    stack = render_stack(settings, dashboard_9628)
    assert plan_files(stack, host_entries(stack)).empty


def test_fresh_host_gets_everything_and_only_the_grafana_password_reset(settings, dashboard_9628):
    stack = render_stack(settings, dashboard_9628)
    plan = plan_files(stack, {})
    # Containers read new files when they start; Grafana's kept volume would keep an older password.
    assert len(plan.write_files) == len(stack.files) and plan.actions == ("reset-password:grafana",)


def test_changed_config_reloads_and_changed_password_restarts_one_exporter(
    settings, dashboard_9628
):
    stack = render_stack(settings, dashboard_9628)
    current = host_entries(stack)
    current["prometheus/rules/pgmon.rules.yml"] = Entry("f", 0o644, 0, 0, "0" * 64)
    current["exporters/billing/pgpass"] = Entry("f", 0o400, 65534, 65534, "1" * 64)
    plan = plan_files(stack, current)
    assert [f.path for f in plan.write_files] == [
        "prometheus/rules/pgmon.rules.yml",
        "exporters/billing/pgpass",
    ]
    assert plan.actions == ("reload:prometheus", "restart:exporter-billing")


def test_wrong_mode_is_repaired(settings, dashboard_9628):
    stack = render_stack(settings, dashboard_9628)
    current = host_entries(stack)
    e = current["exporters/shop/pgpass"]
    current["exporters/shop/pgpass"] = Entry("f", 0o644, e.uid, e.gid, e.sha256)
    assert [f.path for f in plan_files(stack, current).write_files] == ["exporters/shop/pgpass"]


def test_removed_database_removes_its_directory_only(settings, dashboard_9628):
    stack = render_stack(settings, dashboard_9628)
    current = host_entries(stack)
    dbs = group_data()["pgmon_databases"]
    fewer = render_stack(
        build_settings(group_data(pgmon_databases=dbs[:2]), ENVIRON), dashboard_9628
    )
    written = frozenset(current)  # the manifest the first run left
    current["notes.txt"] = Entry(
        "f", 0o644, 0, 0, "2" * 64
    )  # a user's files: not pgmon's to remove
    current["prometheus/rules/mine.yml"] = Entry("f", 0o644, 0, 0, "3" * 64)
    current[".pgmon-stage.x1"] = Entry("d", 0o700, 0, 0)  # left by an interrupted run
    plan = plan_files(fewer, current, written)
    assert plan.remove == (".pgmon-stage.x1", "exporters/ledger")
    assert [f.path for f in plan.write_files] == [
        "docker-compose.yml",
        "prometheus/targets/postgres.json",
        ".pgmon-manifest",
    ]
    # A host deployed before the manifest existed: only a removed database's folder is pgmon's to prune.
    assert plan_files(fewer, current, None).remove == (".pgmon-stage.x1", "exporters/ledger")


def test_container_plan(settings, dashboard_9628):
    desired = render_stack(settings, dashboard_9628).service_revisions
    running = {name: Container(rev, "running") for name, rev in desired.items()}
    assert plan_containers(desired, running).empty
    running["exporter-shop"] = Container("old", "running")
    running["exporter-billing"] = Container(desired["exporter-billing"], "exited")
    running["exporter-gone"] = Container("x", "running")
    del running["grafana"]
    plan = plan_containers(desired, running)
    assert (plan.start, plan.recreate, plan.start_stopped, plan.remove) == (
        ("grafana",),
        ("exporter-shop",),
        ("exporter-billing",),
        ("exporter-gone",),
    )


@pytest.mark.parametrize("hand_over_volumes", [True, False])
def test_only_the_stacks_project_hands_its_data_volumes_over(monkeypatch, hand_over_volumes):
    """The demo's extras are a Compose project of their own, without pgmon's data volumes."""
    monkeypatch.setattr(tasks.stack_containers, "host", HostExecuting())
    (command,) = compose_up._inner(
        "/opt/pgmon-demo-extras",
        "pgmon-demo-extras",
        desired={"postgres": "r1"},
        running={},
        after_file_changes=(),
        hand_over_volumes=hand_over_volumes,
    )
    assert ("prometheus-data" in command) is hand_over_volumes
    assert ("up --no-start" in command) is hand_over_volumes
    assert command.endswith("up --detach --remove-orphans")


def test_parse_state_reads_the_host_listing():
    state = parse_state(
        [
            "docker-installed",
            "engine 28.2.2",
            "compose 2.26.1",
            "container exporter-shop abc running",
            "entry d 755 0 0 .",
            "entry f 400 65534 65534 ./exporters/shop/pgpass",
            "sum " + "a" * 64 + "  ./exporters/shop/pgpass",
        ]
    )
    assert (state.engine_version, state.compose_version) == ("28.2.2", "2.26.1")
    assert state.containers == {"exporter-shop": Container("abc", "running")}
    assert state.entries["exporters/shop/pgpass"] == Entry("f", 0o400, 65534, 65534, "a" * 64)
    assert state.entries["."].kind == "d"
    assert parse_state(["docker-installed", "engine ", "compose "]).engine_version is None


def test_actions_only_touch_existing_containers():
    command = action_command("restart:exporter-shop", "pgmon", "/opt/pgmon")
    assert command == (
        "if docker container inspect -f '{{.State.Running}}' pgmon-exporter-shop 2>/dev/null "
        "| grep -qx true; then docker restart pgmon-exporter-shop >/dev/null; fi"
    )
    reset = action_command("reset-password:grafana", "pgmon", "/opt/pgmon")
    assert "--password-from-stdin < /opt/pgmon/grafana/secrets/admin_password" in reset
    # A container just started gets the time to create its database before the reset.
    assert reset.index("/api/health") < reset.index("reset-admin-password")


def test_only_components_with_changed_files_are_checked_whole(settings, dashboard_9628):
    stack = render_stack(settings, dashboard_9628)
    current = host_entries(stack)
    current["exporters/billing/pgpass"] = Entry("f", 0o400, 65534, 65534, "1" * 64)
    assert plan_files(stack, current).candidates == ()
    current["prometheus/rules/pgmon.rules.yml"] = Entry("f", 0o644, 0, 0, "0" * 64)
    (candidate,) = plan_files(stack, current).candidates
    assert (
        candidate.check.directory == "prometheus" and candidate.check.command[0] == "/bin/promtool"
    )
    assert {f.path for f in candidate.files} == {
        f.path for f in stack.files if f.path.startswith("prometheus/")
    }
    assert [d.path for d in candidate.directories] == [
        "prometheus",
        "prometheus/rules",
        "prometheus/targets",
        "prometheus/secrets",
    ]


def test_renaming_grafanas_admin_is_refused_before_anything_changes(settings):
    from tasks.settings import DeployError
    from tasks.stack_files import refuse_admin_rename

    state = parse_state(["docker-installed", "grafana-admin admin"])
    assert state.grafana_admin_user == "admin"
    refuse_admin_rename(settings, state)  # the same name: fine
    renamed = build_settings(group_data(pgmon_grafana_admin_user="root"), ENVIRON)
    with pytest.raises(
        DeployError,
        match="pgmon_grafana_admin_user: Grafana on this host was set up with the admin",
    ):
        refuse_admin_rename(renamed, state)
    refuse_admin_rename(renamed, parse_state(["docker-installed"]))  # no Grafana yet: any name
