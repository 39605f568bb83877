"""Verification of the long-term stores (pgmon_remote_write): each remote-write queue keeps up.

Prometheus's own metrics say, per store (``remote_name``), the newest sample it has sent; the newest sample it
has appended is ``prometheus_remote_storage_highest_timestamp_in_seconds``. A queue more than a few scrape
intervals behind is not draining: the store is down or cannot keep up, and the samples wait in Prometheus's
WAL (about two hours) until it is back. A store that answers with an error that retrying cannot mend (401, 400)
is different: Prometheus drops those samples and its queue moves on, so failed samples since the last minute
are a failure of their own (seen with Prometheus 3.5.3 and VictoriaMetrics refusing a password).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlencode

from .http_tunnel import HostHTTP
from .render.api_auth import api_credentials
from .settings import Settings
from .stack_model import container_name
from .verify_databases import Finding

_SERIES_RE = re.compile(
    r"^prometheus_remote_storage_(highest_timestamp_in_seconds|queue_highest_sent_timestamp_seconds|"
    r"samples_failed_total|samples_total)(\{[^}]*\})? (\S+)$",
    re.MULTILINE,
)
_REMOTE_NAME_RE = re.compile(r'remote_name="((?:[^"\\]|\\.)*)"')


@dataclass
class QueueReading:
    """One store's queue, from Prometheus's /metrics."""

    sent_up_to: float = 0.0  # the newest sample sent (Unix seconds; 0: none yet)
    samples_sent: float = 0.0
    samples_failed: float = 0.0


def parse_queue_readings(metrics: str) -> tuple[float, dict[str, QueueReading]]:
    """The newest sample Prometheus appended (Unix seconds), and each store's queue by its name."""
    newest, queues = 0.0, {}
    for metric, labels, value in _SERIES_RE.findall(metrics):
        if metric == "highest_timestamp_in_seconds":
            newest = float(value)
            continue
        name = _REMOTE_NAME_RE.search(labels or "")
        if name is None:
            continue
        queue = queues.setdefault(name.group(1), QueueReading())
        if metric == "queue_highest_sent_timestamp_seconds":
            queue.sent_up_to = float(value)
        elif metric == "samples_total":
            queue.samples_sent = float(value)
        else:
            queue.samples_failed = float(value)
    return newest, queues


def allowed_lag_seconds(settings: Settings) -> int:
    """How far behind a draining queue may be: a batch waits up to 5 s, a sample up to one scrape interval."""
    return max(30, 3 * settings.config.scrape_interval_seconds)


def recent_failures(settings: Settings, http: HostHTTP, auth: tuple[str, str]) -> dict[str, float]:
    """Samples each store failed lately (a minute, or four scrapes), from Prometheus's scrapes of itself; a store
    missing has fewer than two scrapes yet."""
    window = f"{max(60, 4 * settings.config.scrape_interval_seconds)}s"
    query = urlencode(
        {
            "query": f"sum by (remote_name) (increase(prometheus_remote_storage_samples_failed_total"
            f"[{window}]))"
        }
    )
    _, body = http.get_json(
        "127.0.0.1",
        settings.config.prometheus_port,
        f"/api/v1/query?{query}",
        auth,
    )
    return {
        series["metric"].get("remote_name", ""): float(series["value"][1])
        for series in (body or {}).get("data", {}).get("result", [])
    }


def check_stores(settings: Settings, http: HostHTTP) -> list[Finding]:
    """A finding per store: sending and how far behind, or why not."""
    stores = settings.config.remote_write
    if not stores:
        return []
    container = container_name(settings.config.project, "prometheus")
    hint = f"docker logs {container} 2>&1 | grep -i remote"
    auth = api_credentials(settings)
    status, body = http.get("127.0.0.1", settings.config.prometheus_port, "/metrics", auth)
    if status != 200:
        return [
            Finding(f"store {s.name}", False, "Prometheus's metrics do not answer", hint)
            for s in stores
        ]
    newest, queues = parse_queue_readings(body.decode(errors="replace"))
    recent = recent_failures(settings, http, auth)
    limit = allowed_lag_seconds(settings)
    findings = []
    for store in stores:
        queue = queues.get(store.name, QueueReading())
        failed = f", {queue.samples_failed:.0f} samples failed" if queue.samples_failed else ""
        # Failures Prometheus has not scraped twice yet (a first run): the counter alone says they are recent.
        refused = queue.samples_failed > 0 and recent.get(store.name, queue.samples_failed) > 0
        if refused:
            findings.append(
                Finding(
                    f"store {store.name}",
                    False,
                    f"{store.url} refuses the samples{failed}, and Prometheus drops them (an error retrying "
                    "cannot mend: the credentials, the URL's path, a header)",
                    hint,
                )
            )
        elif queue.sent_up_to <= 0:
            findings.append(
                Finding(
                    f"store {store.name}", False, f"nothing sent yet to {store.url}{failed}", hint
                )
            )
        elif newest - queue.sent_up_to > limit:
            findings.append(
                Finding(
                    f"store {store.name}",
                    False,
                    f"{newest - queue.sent_up_to:.0f} s behind (more than {limit} s): {store.url} does not take "
                    f"the samples{failed}; they wait in Prometheus's WAL (about 2 h)",
                    hint,
                )
            )
        else:
            findings.append(
                Finding(
                    f"store {store.name}",
                    True,
                    f"{store.url} takes the samples, {max(0.0, newest - queue.sent_up_to):.0f} s behind"
                    f"{failed}",
                )
            )
    return findings
