from tasks.settings import build_settings
from tasks.verify_stack import Finding, report, slow_query_coverage

from .conftest import ENVIRON, group_data


def test_slow_query_rule_coverage_names_the_silent_servers(settings):
    finding = slow_query_coverage(settings)
    assert finding.ok and "rule silent on db1:5432, db2:5433" in finding.detail
    dbs = group_data()["pgmon_databases"]
    covered = build_settings(group_data(pgmon_databases=[{**dbs[0], "pg_stat_statements": True}, dbs[2]]), ENVIRON)
    assert "rule silent on db2:5433:" in slow_query_coverage(covered).detail


def test_report_gives_one_line_per_subject_and_the_hint_for_failures():
    lines = report([Finding("prometheus", True, "ready"), Finding("database shop", False, "pg_up 0", "check it")])
    assert lines[0].split() == ["prometheus", "ok", "ready"]
    assert lines[1].split()[:3] == ["database", "shop", "FAIL"]
    assert lines[2].strip() == "check: check it"
