"""Dashboard queries as Grafana runs them: template variables resolved, then each panel target queried.

Real Grafana cannot run here (tests/e2e/images/README.md), so this module does what its Prometheus
data source does with a dashboard's JSON, closely enough to tell an empty panel from one with data:

* variables in order: ``query`` (``label_values(label)``, ``label_values(selector, label)``,
  ``query_result(expr)``, then the variable's ``/regex/``: first capture group), ``custom``,
  ``constant``, ``interval``; a variable picked for the database under test must offer it,
  the others take "All" when they have it, else their first option;
* values into queries like Grafana's Prometheus data source (``interpolateQueryExpr``): a multi-value
  or "All" variable becomes ``(a|b)`` with regex characters escaped, a single one stays as it is;
  ``$__range``, ``$__interval``, ``$__rate_interval`` as Grafana computes them;
* each visible target: an instant query at the end of the range when ``instant`` (and not
  ``range``), else a range query over the dashboard's time range. A target has data when a series
  has a finite value.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field

import requests

from tasks.dashboard import panels_of

from .lab import api_auth, wait_until

_VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)(?::(\w+))?\}|\[\[(\w+)\]\]")
_LABEL_VALUES = re.compile(r"^label_values\((?:(.*),\s*)?(\w+)\)$", re.DOTALL)
_QUERY_RESULT = re.compile(r"^query_result\((.*)\)$", re.DOTALL)
# A panel's "No value" text naming the PostgreSQL version its statistic needs (pgmon-statistics.json).
_NOT_BEFORE = re.compile(r"not on PostgreSQL before (\d+)")
_DURATION = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


# Panels that list trouble, empty on a healthy lab: test_incidents proves each where it causes that trouble.
EMPTY_WHEN_HEALTHY = frozenset({"Time left before a limit"})


class Prometheus:
    """The HTTP API calls Grafana's Prometheus data source makes, on the test stack's Prometheus."""

    def __init__(self, port: int):
        self.url = f"http://127.0.0.1:{port}/api/v1"
        self.auth = api_auth(port)

    def _get(self, path: str, **params) -> object:
        response = requests.get(self.url + path, params=params, auth=self.auth, timeout=30)
        body = response.json()
        if body.get("status") != "success":
            raise AssertionError(f"Prometheus refused {params}: {body.get('error')}")
        return body["data"]

    def instant(self, expr: str, at: float) -> list[dict]:
        return self._get("/query", query=expr, time=f"{at:.3f}")["result"]

    def range(self, expr: str, start: float, end: float, step: float) -> list[dict]:
        return self._get(
            "/query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}", step=f"{step:g}"
        )["result"]

    def label_values(self, label: str, selector: str | None, start: float, end: float) -> list[str]:
        params = {"start": f"{start:.3f}", "end": f"{end:.3f}"}
        if selector:
            params["match[]"] = selector
        return self._get(f"/label/{label}/values", **params)


def seconds(text: str) -> float:
    return sum(int(n) * _DURATION[unit] for n, unit in re.findall(r"(\d+)([smhdw])", text))


def regex_escape(value: str) -> str:
    """Grafana's prometheusSpecialRegexEscape: a backslash-escaped regex character, inside a PromQL string."""
    return re.sub(r"([$^*{}\[\]'+?.()|])", r"\\\\\1", value.replace("\\", "\\\\\\\\"))


def query_result_text(series: dict) -> str:
    """How Grafana shows one ``query_result`` row to a variable's regex: ``name{a="x",b="y"} value time``."""
    labels = dict(series["metric"])
    name = labels.pop("__name__", "")
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{name}{{{inner}}} {series['value'][1]} {int(float(series['value'][0]) * 1000)}"


def apply_regex(regex: str, texts: list[str]) -> list[str]:
    if not regex:
        return list(dict.fromkeys(texts))
    body, _, flags = regex[1:].rpartition("/") if regex.startswith("/") else (regex, "", "")
    pattern = re.compile(body, re.IGNORECASE if "i" in flags else 0)
    values = []
    for text in texts:
        match = pattern.search(text)
        if match:
            values.append(match.group(1) if match.groups() else match.group(0))
    return list(dict.fromkeys(values))


@dataclass
class Resolution:
    """Variable name -> (value, or values for multi/All) and whether it is multi-valued."""

    values: dict[str, list[str]] = field(default_factory=dict)
    multi: dict[str, bool] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


@dataclass
class Dashboard:
    model: dict
    prometheus: Prometheus
    scrape_seconds: int
    now: float = field(default_factory=time.time)

    @property
    def range_seconds(self) -> float:
        return seconds(self.model.get("time", {}).get("from", "now-6h").removeprefix("now-"))

    @property
    def start(self) -> float:
        return self.now - self.range_seconds

    @property
    def step(self) -> float:
        # Grafana: the datasource's minimum interval or range / max data points, whichever is larger.
        return float(max(self.scrape_seconds, math.ceil(self.range_seconds / 1000)))

    def builtins(self) -> dict[str, str]:
        rate = max(self.step + self.scrape_seconds, 4 * self.scrape_seconds)
        return {
            "__range": f"{int(self.range_seconds)}s",
            "__range_s": str(int(self.range_seconds)),
            "__interval": f"{int(self.step)}s",
            "__rate_interval": f"{int(rate)}s",
        }

    def interpolate(self, text: str, resolution: Resolution) -> str:
        builtins = self.builtins()

        def value(match: re.Match) -> str:
            name = match.group(1) or match.group(2) or match.group(4)
            if name in builtins:
                return builtins[name]
            if name not in resolution.values:
                return match.group(0)  # Grafana leaves unknown variables as they are
            values = resolution.values[name]
            if not resolution.multi[name]:
                return values[0] if values else ""
            escaped = [regex_escape(v) for v in values]
            return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"

        return _VARIABLE.sub(value, text)

    def options(self, variable: dict, resolution: Resolution) -> list[str]:
        kind = variable.get("type")
        query = variable.get("query")
        query = query.get("query", "") if isinstance(query, dict) else (query or "")
        if kind in ("custom", "interval"):
            return [v.strip() for v in query.split(",") if v.strip()]
        if kind == "constant":
            return [query]
        if kind != "query":
            return []
        query = self.interpolate(query.strip(), resolution)
        if match := _QUERY_RESULT.match(query):
            texts = [
                query_result_text(s) for s in self.prometheus.instant(match.group(1), self.now)
            ]
        elif match := _LABEL_VALUES.match(query):
            texts = self.prometheus.label_values(
                match.group(2), match.group(1), self.start, self.now
            )
        else:
            raise AssertionError(
                f"variable {variable['name']}: query {query!r} is not one Grafana's Prometheus knows"
            )
        return sorted(apply_regex(variable.get("regex") or "", texts))

    def resolve(self, picks: dict[str, str]) -> Resolution:
        """Each variable in dashboard order, as a user picking ``picks`` (name -> value) would have them."""
        resolution = Resolution()
        for variable in self.model.get("templating", {}).get("list", []):
            name = variable["name"]
            if variable.get("type") == "datasource":
                continue
            options = self.options(variable, resolution)
            multi = bool(variable.get("multi") or variable.get("includeAll"))
            if name in picks:
                if picks[name] not in options:
                    resolution.problems.append(
                        f"variable {name} does not offer {picks[name]!r} (offers {options})"
                    )
                chosen = [picks[name]]
            elif variable.get("includeAll"):
                chosen = [variable["allValue"]] if variable.get("allValue") else options
            else:
                chosen = options[:1]
            resolution.values[name] = chosen
            resolution.multi[name] = multi and not (name not in picks and variable.get("allValue"))
        return resolution

    def targets(self):
        """(panel title, target, the PostgreSQL major it needs or 0) for every visible query target."""
        for panel in panels_of(self.model.get("panels", [])):
            no_value = panel.get("fieldConfig", {}).get("defaults", {}).get("noValue", "")
            needs = _NOT_BEFORE.fullmatch(no_value)
            for target in panel.get("targets") or []:
                if target.get("expr") and not target.get("hide"):
                    yield panel.get("title", ""), target, int(needs[1]) if needs else 0

    def has_data(self, expr: str, target: dict) -> bool:
        if target.get("instant") and not target.get("range"):
            series = [[s["value"]] for s in self.prometheus.instant(expr, self.now)]
        else:
            series = [
                s["values"] for s in self.prometheus.range(expr, self.start, self.now, self.step)
            ]
        return any(math.isfinite(float(v)) for values in series for _, v in values)

    def empty_panels(self, picks: dict[str, str], postgresql: int = 0) -> list[str]:
        """What a user picking ``picks`` on a PostgreSQL ``postgresql`` (major) server would see without
        data: one line per variable or target. A panel that says it needs a newer server ("not on PostgreSQL
        before N") must be empty there instead, or its message would be false."""
        resolution = self.resolve(picks)
        empty = list(resolution.problems)
        for title, target, needs in self.targets():
            expr = self.interpolate(target["expr"], resolution)
            try:
                if postgresql and postgresql < needs:
                    if self.has_data(expr, target):
                        empty.append(f"panel {title!r} has data on PostgreSQL {postgresql}: {expr}")
                elif title not in EMPTY_WHEN_HEALTHY and not self.has_data(expr, target):
                    empty.append(f"panel {title!r} has no data: {expr}")
            except AssertionError as error:
                empty.append(f"panel {title!r} cannot be queried ({error}): {expr}")
        return empty


def wait_for_every_panel(empty_panels, timeout: float, interval: float) -> None:
    """Waits until ``empty_panels()`` (a name -> its empty_panels lines) names none; fails with the last lines."""
    last: dict[str, list[str]] = {}

    def none_empty() -> bool:
        last.clear()
        last.update(empty_panels())
        return not last

    try:
        wait_until("every panel with data", none_empty, timeout, interval=interval)
    except TimeoutError:
        report = "\n".join(f"{name}: {line}" for name, lines in last.items() for line in lines)
        raise AssertionError(f"panels without data:\n{report}") from None
