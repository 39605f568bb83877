"""Dashboard 9628 as pgmon writes it: adapted to pgmon's labels, refused when it is not the one pgmon knows."""

import copy
import hashlib
import json
import re

import pytest
import requests

from tasks.dashboard import adapt_dashboard_9628, load_dashboard_9628
from tasks.settings import DeployError, build_settings

from .conftest import ENVIRON, FIXTURES, VARIABLE, exprs, group_data, pgmon_query_series

SELECTOR = re.compile(r'(?<![\w:"])((?:pg|process)_[\w:]*)(\{[^}]*\})?')


def test_9628_picks_a_server_then_a_database_by_pgmons_labels(dashboard_9628):
    published = copy.deepcopy(dashboard_9628)
    adapted = adapt_dashboard_9628(dashboard_9628, "pgmon_dashboard_9628")
    assert dashboard_9628 == published  # the published JSON (the cache) is left as it is
    variables = {v["name"]: v for v in adapted["templating"]["list"]}
    assert list(variables) == [
        "interval",
        "server",
        "instance",
        "datname",
        "mode",
    ]  # no Kubernetes namespace
    assert variables["server"]["query"] == 'label_values(pg_up{job="postgres"}, server)'
    assert variables["instance"]["label"] == "Database"
    assert (
        variables["instance"]["query"]
        == 'label_values(pg_up{job="postgres", server="$server"}, instance)'
    )
    assert (
        variables["datname"]["hide"] == 2 and "pgmon_database_info" in variables["datname"]["query"]
    )
    assert "pgmon" in adapted["tags"] and any(
        link.get("tags") == ["pgmon"] for link in adapted["links"]
    )


def test_9628_queries_are_scoped_by_server_or_by_the_databases_exporter(dashboard_9628):
    adapted = adapt_dashboard_9628(dashboard_9628, "pgmon_dashboard_9628")
    defined = {v["name"] for v in adapted["templating"]["list"]}
    selectors = 0
    for title, expr in exprs(adapted):
        assert "release" not in expr and "kubernetes_namespace" not in expr, title
        assert set(VARIABLE.findall(expr)) <= defined, (title, expr)
        for name, matchers in SELECTOR.findall(expr):
            selectors += 1
            scope = 'instance="$instance"' if name.startswith("process_") else 'server="$server"'
            assert matchers.startswith("{" + scope), (title, expr)
            assert matchers.count("instance=") == (1 if name.startswith("process_") else 0), (
                title,
                expr,
            )
            if name.startswith("pg_stat_bgwriter_"):
                assert name.endswith("_total"), (title, expr)
    assert selectors >= 40


def test_9628_queries_over_moved_counters_fall_back_to_postgresql_17_names(dashboard_9628):
    adapted = list(exprs(adapt_dashboard_9628(dashboard_9628, "pgmon_dashboard_9628")))
    assert dict(adapted)["Checkpoint Stats"] == (
        '(irate(pg_stat_bgwriter_checkpoint_sync_time_total{server="$server"}[5m])) or '
        '(irate(pg_stat_checkpointer_sync_time_total{server="$server"}[5m]))'
    )
    fallbacks = [expr for _, expr in adapted if "pg_stat_checkpointer_" in expr]
    assert len(fallbacks) == 3  # buffers written, write time, sync time
    assert all(expr.count(" or ") == 1 for expr in fallbacks)
    buffers = [expr for title, expr in adapted if title == "Buffers (bgwriter)"]
    assert (
        '(irate(pg_stat_bgwriter_buffers_backend_total{server="$server"}[5m])) or '
        '(irate(pgmon_stat_io_backend_writes{server="$server"}[5m]))'
    ) in buffers
    assert (
        '(irate(pg_stat_bgwriter_buffers_backend_fsync_total{server="$server"}[5m])) or '
        '(irate(pgmon_stat_io_backend_fsyncs{server="$server"}[5m]))'
    ) in buffers


def test_9628_fallbacks_read_series_pgmons_server_query_produces(dashboard_9628):
    produced = pgmon_query_series()
    adapted = json.dumps(adapt_dashboard_9628(dashboard_9628, "pgmon_dashboard_9628"))
    assert {"pgmon_stat_io_backend_writes", "pgmon_stat_io_backend_fsyncs"} <= produced
    assert set(re.findall(r"\b(pgmon_[a-z_]+)\{", adapted)) <= produced


def test_9628_adaptation_refuses_a_dashboard_it_does_not_know(dashboard_9628):
    other = copy.deepcopy(dashboard_9628)
    other["templating"]["list"] = [v for v in other["templating"]["list"] if v["name"] != "release"]
    with pytest.raises(
        DeployError,
        match=r"pgmon_dashboard_9628.file: .*no template variable\(s\) release.*revision 8",
    ):
        adapt_dashboard_9628(other, "pgmon_dashboard_9628.file")
    unreadable = copy.deepcopy(dashboard_9628)
    unreadable["panels"][1]["targets"][0]["expr"] = "pg_static{instance='$instance'}"
    with pytest.raises(DeployError, match=r"panel 'Version': cannot read the label matchers"):
        adapt_dashboard_9628(unreadable, "pgmon_dashboard_9628.revision")
    leftover = copy.deepcopy(dashboard_9628)
    leftover["panels"][1]["title"] = "Version in $namespace"
    with pytest.raises(DeployError, match=r"still refers to \$namespace"):
        adapt_dashboard_9628(leftover, "pgmon_dashboard_9628.revision")


def serve_download(monkeypatch, body: bytes) -> list[str]:
    """requests.get answering every URL with ``body``; returns the URLs asked for."""
    downloads = []

    class Response:
        content = body

        def raise_for_status(self):
            pass

    monkeypatch.setattr(requests, "get", lambda url, timeout: downloads.append(url) or Response())
    return downloads


def test_9628_download_is_cached_byte_for_byte_and_served_adapted(
    dashboard_9628, monkeypatch, tmp_path
):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    published = json.dumps(dashboard_9628, indent=1).encode()
    downloads = serve_download(monkeypatch, published)
    settings = build_settings(
        group_data(pgmon_dashboard_9628={"url": "http://127.0.0.1:9/{revision}"}), ENVIRON
    )
    first, second = load_dashboard_9628(settings), load_dashboard_9628(settings)
    assert downloads == ["http://127.0.0.1:9/8"] and first == second
    assert "server" in {v["name"] for v in first["templating"]["list"]}
    (cached,) = (tmp_path / "pgmon").glob("dashboard-9628-r8-*.json")
    assert cached.read_bytes() == published  # so sha256sum of the cache is the value to pin


def test_9628_other_bytes_than_the_pinned_sha256_are_refused(dashboard_9628, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    published = json.dumps(dashboard_9628).encode()
    pinned = hashlib.sha256(published).hexdigest()
    serve_download(
        monkeypatch, published.replace(b"PostgreSQL Database", b"PostgreSQL Database (changed)")
    )
    data = group_data(
        pgmon_dashboard_9628={"url": "http://127.0.0.1:9/{revision}", "sha256": pinned}
    )
    with pytest.raises(
        DeployError,
        match=rf"pgmon_dashboard_9628.sha256: http://127.0.0.1:9/8 has sha256 \w{{64}}, "
        rf"not the pinned {pinned}",
    ):
        load_dashboard_9628(build_settings(data, ENVIRON))
    assert not list((tmp_path / "pgmon").glob("*.json"))  # what was refused is not cached

    serve_download(monkeypatch, published)
    assert load_dashboard_9628(build_settings(data, ENVIRON))["templating"]
    (cached,) = (tmp_path / "pgmon").glob("dashboard-9628-r8-*.json")
    cached.write_bytes(
        cached.read_bytes() + b"\n"
    )  # a cache edited since, by hand or by an older pgmon
    with pytest.raises(DeployError, match=rf"{cached} has sha256 .*delete the cached copy"):
        load_dashboard_9628(build_settings(data, ENVIRON))

    other_file = tmp_path / "9628.json"
    other_file.write_bytes(published + b" ")
    with pytest.raises(DeployError, match=rf"pgmon_dashboard_9628.sha256: {other_file} has sha256"):
        load_dashboard_9628(
            build_settings(
                group_data(pgmon_dashboard_9628={"file": str(other_file), "sha256": pinned}),
                ENVIRON,
            )
        )


def test_9628_sha256_must_be_written_as_sha256sum_prints_it():
    with pytest.raises(
        DeployError, match=r"pgmon_dashboard_9628.sha256: .*64 lowercase hex digits"
    ):
        build_settings(group_data(pgmon_dashboard_9628={"sha256": "ABC"}), ENVIRON)


def test_9628_from_a_file_is_adapted_too():
    settings = build_settings(
        group_data(pgmon_dashboard_9628={"file": str(FIXTURES / "dashboard-9628.json")}), ENVIRON
    )
    assert not any("$release" in expr for _, expr in exprs(load_dashboard_9628(settings)))


@pytest.mark.parametrize(
    "change",
    [
        {"templating": []},
        {"panels": "x"},
        {"templating": {"list": [1]}},
        {"__inputs": ["DS_PROMETHEUS"]},
    ],
)
def test_a_malformed_dashboard_file_is_refused_naming_the_field(dashboard_9628, tmp_path, change):
    path = tmp_path / "9628.json"
    path.write_text(json.dumps({**dashboard_9628, **change}))
    settings = build_settings(group_data(pgmon_dashboard_9628={"file": str(path)}), ENVIRON)
    with pytest.raises(DeployError, match="^pgmon_dashboard_9628"):
        load_dashboard_9628(settings)
