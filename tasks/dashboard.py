"""Dashboard 9628 ("PostgreSQL Database") fetched on the controller, cached, never by Grafana,
and adapted to pgmon's labels before it is bound and written.

Grafana's import API does not download from grafana.com, so the controller does,
once per pinned revision, and keeps the JSON in ~/.cache/pgmon (or
$XDG_CACHE_HOME/pgmon). Air-gapped sites set ``pgmon_dashboard_9628.file``.

As published, 9628 finds its exporters by Kubernetes labels (``kubernetes_namespace``,
``release``) that a Docker stack does not have, and assumes one exporter per server whose
``instance`` carries every series. ``adapt_dashboard_9628`` rewrites its template variables
and label matchers for pgmon's ``server``/``instance`` labels; docs/dashboards.md explains the
choice.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from pathlib import Path

from .settings import DeployError, Settings

# The exporter process's own series: one set per exporter, so they follow the database picked.
# Every other series 9628 reads comes from the collectors that only a server's first exporter runs
# (render.SERVER_WIDE_COLLECTORS and the default metrics), labelled with that exporter's instance.
PER_EXPORTER_PREFIXES = ("process_",)
# Labels 9628 selects on that pgmon replaces with its scope matcher (server or instance).
REPLACED_LABELS = ("kubernetes_namespace", "release", "instance")
# postgres_exporter 0.11+ names these counters with _total; 9628 still queries the old names.
_BGWRITER = re.compile(r"^pg_stat_bgwriter_\w+$")
# PostgreSQL 17 moved pg_stat_bgwriter's checkpoint columns to pg_stat_checkpointer, which postgres_exporter
# reads under these names (its stat_checkpointer collector, on in the server's first exporter), and its
# buffers_backend columns to pg_stat_io, which postgres_exporter does not read: pgmon's own query
# (render.exporters.SERVER_QUERIES["pgmon_stat_io_backend"], same exporter, PostgreSQL 17 on) gives those.
MOVED_IN_PG17 = {
    "pg_stat_bgwriter_buffers_checkpoint_total": "pg_stat_checkpointer_buffers_written_total",
    "pg_stat_bgwriter_checkpoint_write_time_total": "pg_stat_checkpointer_write_time_total",
    "pg_stat_bgwriter_checkpoint_sync_time_total": "pg_stat_checkpointer_sync_time_total",
    "pg_stat_bgwriter_checkpoints_timed_total": "pg_stat_checkpointer_num_timed_total",
    "pg_stat_bgwriter_checkpoints_req_total": "pg_stat_checkpointer_num_requested_total",
    "pg_stat_bgwriter_buffers_backend_total": "pgmon_stat_io_backend_writes",
    "pg_stat_bgwriter_buffers_backend_fsync_total": "pgmon_stat_io_backend_fsyncs",
}
_MOVED_NAME = re.compile(r"\b(" + "|".join(MOVED_IN_PG17) + r")\b")
# A metric selector: a pg_/process_ metric name and its optional {matchers} (quoted values may hold braces).
_SELECTOR = re.compile(r'(?<![\w:"])((?:pg|process)_[\w:]*)(\{(?:[^{}"]|"(?:[^"\\]|\\.)*")*\})?')
_MATCHER = re.compile(r'\s*([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*")\s*,?')

SERVER_VARIABLE = {
    "name": "server",
    "label": "Server",
    "type": "query",
    "query": 'label_values(pg_up{job="postgres"}, server)',
}
VARIABLE_CHANGES = {
    # pgmon's instance label is the configured database name: the picker for "which database".
    "instance": {
        "label": "Database",
        "query": 'label_values(pg_up{job="postgres", server="$server"}, instance)',
    },
    # The PostgreSQL name of the database picked; server-wide rows are labelled with it.
    "datname": {
        "label": "PostgreSQL database",
        "hide": 2,
        "includeAll": False,
        "multi": False,
        "query": 'label_values(pgmon_database_info{instance="$instance"}, datname)',
    },
}
# A drop-down of pgmon's dashboards (all tagged "pgmon"), keeping the time range.
PGMON_DASHBOARDS_LINK = {
    "title": "pgmon",
    "type": "dashboards",
    "tags": ["pgmon"],
    "asDropdown": True,
    "includeVars": False,
    "keepTime": True,
    "icon": "external link",
    "targetBlank": False,
}


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pgmon"


def _published(raw: bytes, source: str, field: str, pinned: str | None) -> dict:
    """The published JSON read from ``raw``, refused unless it has the pinned sha256 and 9628's input."""
    digest = hashlib.sha256(raw).hexdigest()
    if pinned and digest != pinned:
        raise DeployError(
            f"pgmon_dashboard_9628.sha256: {source} has sha256 {digest}, not the pinned {pinned}; "
            "fetch the pinned revision again (delete the cached copy in ~/.cache/pgmon), or pin the new sha256 "
            "after reviewing the JSON"
        )
    try:
        dashboard = json.loads(raw)
    except ValueError as error:
        raise DeployError(
            f"{field}: {source} is not JSON ({error}); point it at dashboard 9628's JSON"
        ) from None
    inputs = dashboard.get("__inputs", []) if isinstance(dashboard, dict) else None
    if not isinstance(inputs, list) or "DS_PROMETHEUS" not in [
        i.get("name") for i in inputs if isinstance(i, dict)
    ]:
        raise DeployError(
            f"{field}: {source} is not a grafana.com dashboard export with a DS_PROMETHEUS input; "
            "point it at dashboard 9628's JSON"
        )
    return dashboard


def load_dashboard_9628(settings: Settings) -> dict:
    """The dashboard adapted to pgmon's labels, from the configured file, the cache, or a download (then cached).

    The cache keeps the downloaded bytes as they are, so ``sha256sum`` of the cached file is the
    value to pin in ``pgmon_dashboard_9628.sha256``.
    """
    source = settings.config.dashboard_9628
    if source.file:
        try:
            raw = Path(source.file).read_bytes()
        except OSError as error:
            raise DeployError(
                f"pgmon_dashboard_9628.file: cannot read {source.file}: {error}"
            ) from None
        return adapt_dashboard_9628(
            _published(raw, source.file, "pgmon_dashboard_9628.file", source.sha256),
            "pgmon_dashboard_9628.file",
        )
    url = source.url.format(revision=source.revision)
    cached = (
        cache_dir()
        / f"dashboard-9628-r{source.revision}-{hashlib.sha256(url.encode()).hexdigest()[:12]}.json"
    )
    if cached.exists():
        published = _published(
            cached.read_bytes(), str(cached), "pgmon_dashboard_9628", source.sha256
        )
        return adapt_dashboard_9628(published, "pgmon_dashboard_9628.revision")
    # Imported only to download: with the dashboard cached, every run would pay its import (0.1-0.3 s).
    import requests

    try:
        response = requests.get(url, timeout=30)
        response.raise_for_status()
    except requests.RequestException as error:
        raise DeployError(
            f"pgmon_dashboard_9628.url: cannot download {url} ({error}); without internet access, "
            "save the dashboard JSON on this machine and set pgmon_dashboard_9628 = {'file': '/path/9628.json'}"
        ) from None
    published = _published(response.content, url, "pgmon_dashboard_9628.url", source.sha256)
    adapted = adapt_dashboard_9628(
        published, "pgmon_dashboard_9628.revision"
    )  # refuse before caching
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(".partial")
    partial.write_bytes(response.content)
    partial.replace(cached)
    return adapted


def panels_of(panels: list[dict]):
    """Every panel, including those inside collapsed rows."""
    for panel in panels:
        yield panel
        yield from panels_of(panel.get("panels") or [])


def scope_selectors(expr: str) -> str:
    """9628's label matchers turned into pgmon's: each selector gets ``server="$server"`` (server-wide
    series) or ``instance="$instance"`` (the exporter's own), in place of release/instance/namespace."""

    def rewrite(match: re.Match) -> str:
        name, braces = match.group(1), match.group(2) or "{}"
        if _BGWRITER.match(name) and not name.endswith("_total"):
            name += "_total"
        if _MATCHER.sub(
            "", braces[1:-1]
        ).strip():  # dropping what it cannot read would widen the query
            raise ValueError(f"cannot read the label matchers of {match.group(0)}")
        kept = [
            m.group(0).strip().rstrip(",").strip()
            for m in _MATCHER.finditer(braces[1:-1])
            if m.group(1) not in REPLACED_LABELS
        ]
        scope = (
            'instance="$instance"' if name.startswith(PER_EXPORTER_PREFIXES) else 'server="$server"'
        )
        return name + "{" + ", ".join([scope, *kept]) + "}"

    return _SELECTOR.sub(rewrite, expr)


def with_pg17_fallback(expr: str) -> str:
    """An expression over counters PostgreSQL 17 moved, ``or`` the same over their PostgreSQL 17 names:
    a server has one or the other, so each database shows whichever its server has. The whole
    expression is repeated because a range selector cannot apply to ``a or b``."""
    if not _MOVED_NAME.search(expr):
        return expr
    since_17 = _MOVED_NAME.sub(lambda m: MOVED_IN_PG17[m.group(1)], expr)
    return f"({expr}) or ({since_17})"


def adapt_dashboard_9628(published: dict, field: str) -> dict:
    """``_adapt`` that names ``field`` for any JSON shape it cannot read, instead of failing with a traceback."""
    try:
        return _adapt(published, field)
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        raise DeployError(
            f"{field}: the dashboard JSON is not shaped like 9628's ({type(error).__name__}: "
            f"{error}); point it at dashboard 9628 revision 8"
        ) from None


def _adapt(published: dict, field: str) -> dict:
    """9628 for pgmon: Server and Database pickers in place of its Kubernetes chain, every query scoped
    by them, bgwriter counters under their current names (or where PostgreSQL 17 moved them).
    Refuses a dashboard it does not recognise (naming ``field``), so a changed upstream JSON cannot
    slip through with empty panels.
    """
    dashboard = copy.deepcopy(published)
    variables = dashboard.get("templating", {}).get("list", [])
    by_name = {v.get("name"): v for v in variables}
    missing = [name for name in ("namespace", "release", *VARIABLE_CHANGES) if name not in by_name]
    if missing:
        raise DeployError(
            f"{field}: this dashboard has no template variable(s) {', '.join(missing)}, so it is not the "
            "revision pgmon knows how to adapt (9628 revision 8); pin revision 8"
        )
    adapted_variables = []
    for variable in variables:
        name = variable.get("name")
        if name == "namespace":
            continue  # no Kubernetes namespace on a Docker stack
        if name == "release":
            variable = {
                **variable,
                **SERVER_VARIABLE,
                "regex": "",
                "includeAll": False,
                "multi": False,
            }
        elif name in VARIABLE_CHANGES:
            variable = {**variable, **VARIABLE_CHANGES[name], "regex": ""}
        if name in ("release", *VARIABLE_CHANGES):
            variable["definition"] = variable["query"]
            variable["current"], variable["options"] = (
                {},
                [],
            )  # values of the Kubernetes chain mean nothing here
        adapted_variables.append(variable)
    dashboard["templating"]["list"] = adapted_variables
    for panel in panels_of(dashboard.get("panels", [])):
        for target in panel.get("targets") or []:
            if isinstance(target.get("expr"), str):
                try:
                    target["expr"] = with_pg17_fallback(scope_selectors(target["expr"]))
                except ValueError as error:
                    raise DeployError(
                        f"{field}: panel {panel.get('title')!r}: {error}; pin revision 8, whose "
                        "queries pgmon knows"
                    ) from None
    leftovers = sorted(
        set(
            re.findall(
                r"\$release|\$namespace|kubernetes_namespace|\$\{(?:release|namespace)\}",
                json.dumps(dashboard),
            )
        )
    )
    if leftovers:
        raise DeployError(
            f"{field}: the dashboard still refers to {', '.join(leftovers)} after pgmon adapted it; "
            "pin revision 8, whose queries pgmon knows"
        )
    dashboard["tags"] = sorted(set(dashboard.get("tags") or []) | {"pgmon"})
    dashboard["links"] = [*(dashboard.get("links") or []), PGMON_DASHBOARDS_LINK]
    return dashboard
