"""Dashboard 9628 ("PostgreSQL Database") fetched on the controller, cached, never by Grafana.

Grafana's import API does not download from grafana.com, so the controller does,
once per pinned revision, and keeps the JSON in ~/.cache/pgmon (or
$XDG_CACHE_HOME/pgmon). Air-gapped sites set ``pgmon_dashboard_9628.file``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import requests

from .settings import DeployError, Settings


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pgmon"


def _checked(dashboard: object, source: str, field: str) -> dict:
    inputs = dashboard.get("__inputs", []) if isinstance(dashboard, dict) else None
    if not isinstance(inputs, list) or "DS_PROMETHEUS" not in [i.get("name") for i in inputs]:
        raise DeployError(
            f"{field}: {source} is not a grafana.com dashboard export with a DS_PROMETHEUS input; "
            "point it at dashboard 9628's JSON"
        )
    return dashboard


def load_dashboard_9628(settings: Settings) -> dict:
    """The dashboard's JSON: from the configured file, the cache, or a download (then cached)."""
    source = settings.config.dashboard_9628
    if source.file:
        try:
            return _checked(json.loads(Path(source.file).read_text()), source.file, "pgmon_dashboard_9628.file")
        except (OSError, ValueError) as error:
            raise DeployError(f"pgmon_dashboard_9628.file: cannot read {source.file}: {error}")
    url = source.url.format(revision=source.revision)
    cached = cache_dir() / f"dashboard-9628-r{source.revision}-{hashlib.sha256(url.encode()).hexdigest()[:12]}.json"
    if cached.exists():
        return _checked(json.loads(cached.read_text()), str(cached), "pgmon_dashboard_9628")
    try:
        response = requests.get(url, timeout=30)
        response.raise_for_status()
        dashboard = _checked(response.json(), url, "pgmon_dashboard_9628.url")
    except (requests.RequestException, ValueError) as error:
        raise DeployError(
            f"pgmon_dashboard_9628.url: cannot download {url} ({error}); without internet access, "
            "save the dashboard JSON on this machine and set pgmon_dashboard_9628 = {'file': '/path/9628.json'}"
        )
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(".partial")
    partial.write_text(json.dumps(dashboard))
    partial.replace(cached)
    return dashboard
