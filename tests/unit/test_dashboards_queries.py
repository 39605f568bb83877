"""The end-to-end suite's imitation of Grafana's variable handling (tests/e2e/grafana_queries.py), on a fake Prometheus."""

from tests.e2e.grafana_queries import (
    Dashboard,
    apply_regex,
    query_result_text,
    regex_escape,
)

PG_UP = [
    {
        "metric": {
            "__name__": "pg_up",
            "database": "shop",
            "instance": "shop",
            "server": "db1:5432",
        },
        "value": [1700000000.5, "1"],
    },
    {
        "metric": {
            "__name__": "pg_up",
            "database": "billing",
            "instance": "billing",
            "server": "db1:5432",
        },
        "value": [1700000000.5, "1"],
    },
]


class FakePrometheus:
    def __init__(self, data_for: set[str]):
        self.data_for, self.queries = data_for, []

    def instant(self, expr, at):
        self.queries.append(expr)
        if expr.startswith("pg_up"):
            return PG_UP
        return [{"metric": {}, "value": [at, "1"]}] if expr in self.data_for else []

    def range(self, expr, start, end, step):
        self.queries.append(expr)
        return (
            [{"metric": {}, "values": [[start, "NaN"], [end, "2"]]}]
            if expr in self.data_for
            else []
        )

    def label_values(self, label, selector, start, end):
        return {
            "server": ["db1:5432", "db2:5433"],
            "mode": ["accesssharelock", "rowexclusivelock"],
        }[label]


def test_query_result_rows_read_as_grafana_shows_them_to_a_regex():
    text = query_result_text(PG_UP[0])
    assert text == 'pg_up{database="shop",instance="shop",server="db1:5432"} 1 1700000000500'
    assert apply_regex('/.*instance="([^"]+).*/', [text, text]) == ["shop"]
    assert (
        apply_regex('/.*release="([^"]+)/', [text]) == []
    )  # 9628's release regex finds nothing here


def test_values_are_interpolated_like_grafanas_prometheus_data_source():
    assert regex_escape("db1.internal:5432") == r"db1\\.internal:5432"
    model = {
        "time": {"from": "now-1h"},
        "templating": {
            "list": [
                {
                    "name": "server",
                    "type": "query",
                    "query": "label_values(server)",
                    "multi": True,
                    "includeAll": True,
                },
                {
                    "name": "instance",
                    "type": "query",
                    "query": "query_result(pg_up)",
                    "regex": '/instance="([^"]+)"/',
                },
                {
                    "name": "mode",
                    "type": "query",
                    "query": 'label_values({mode=~"a.*"}, mode)',
                    "includeAll": True,
                    "allValue": ".*",
                },
            ]
        },
        "panels": [
            {
                "title": "Lock tables",
                "type": "graph",
                "targets": [
                    {
                        "expr": 'pg_locks_count{server=~"$server", instance="$instance", mode=~"$mode"}[$__rate_interval]'
                    }
                ],
            }
        ],
    }
    dashboard = Dashboard(model, FakePrometheus(set()), scrape_seconds=15)
    resolution = dashboard.resolve({"instance": "billing"})
    expr = dashboard.interpolate(model["panels"][0]["targets"][0]["expr"], resolution)
    assert (
        expr
        == r'pg_locks_count{server=~"(db1:5432|db2:5433)", instance="billing", mode=~".*"}[60s]'
    )
    assert dashboard.resolve({"instance": "ledger"}).problems == [
        "variable instance does not offer 'ledger' (offers ['billing', 'shop'])"
    ]


def test_a_panel_without_data_is_named_with_its_query():
    model = {
        "time": {"from": "now-1h"},
        "templating": {"list": []},
        "panels": [
            {
                "type": "row",
                "title": "Row",
                "panels": [
                    {"title": "Has data", "targets": [{"expr": "up"}]},
                    {
                        "title": "Empty",
                        "targets": [
                            {"expr": "down", "instant": True},
                            {"expr": "hidden", "hide": True},
                        ],
                    },
                ],
            }
        ],
    }
    prometheus = FakePrometheus({"up"})
    assert Dashboard(model, prometheus, scrape_seconds=2).empty_panels({}) == [
        "panel 'Empty' has no data: down"
    ]
    assert "hidden" not in prometheus.queries
