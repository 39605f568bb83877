"""Runbooks (docs/runbooks.md): one section per alert rule and none without one, every rendered rule's
`runbook_url` at its own section, and the Discord and Telegram messages linking it beside the dashboard."""

import re

import pytest

from tasks.settings import DEFAULT_RUNBOOK_BASE_URL, build_settings

from .conftest import ENVIRON, alert_rules, error_for, group_data, needs_amtool
from .test_alert_links import GRAFANA, link, linked_group, with_runbook
from .test_readme import ROOT, anchor
from .test_rules_routing import alert, group, render

RUNBOOKS = ROOT / "docs" / "runbooks.md"


def runbook_sections(text: str) -> list[str]:
    """The runbook's `## ` headings: each one rule's section (the page has no other)."""
    return re.findall(r"^## (.+)$", text, re.MULTILINE)


def mismatches(text: str, rules: set[str]) -> tuple[set[str], set[str]]:
    """(rules without a section, sections without a rule)."""
    sections = set(runbook_sections(text))
    return rules - sections, sections - rules


def every_rule() -> set[str]:
    """The alerts of a deployment with every kind of rule: listed databases, a discovered server, and a data
    volume's size (DataVolumeRunsOut)."""
    server = {"name": "tenants", "host": "db3", "user": "mon", "password_env": "PW_LEDGER"}
    settings = group_data(pgmon_servers=[server], pgmon_alert_thresholds={"data_volume_gib": 100})
    return set(alert_rules(build_settings(settings, ENVIRON)))


def test_every_rule_has_a_runbook_section_and_every_section_a_rule():
    assert mismatches(RUNBOOKS.read_text(), every_rule()) == (set(), set())


def test_a_missing_or_stray_section_is_caught():
    text, rules = RUNBOOKS.read_text(), every_rule()
    assert mismatches(text.replace("## LockContention\n", "## LockContentions\n"), rules) == (
        {"LockContention"},
        {"LockContentions"},
    )


def test_every_section_says_what_it_means_how_bad_what_to_check_fix_and_when_to_escalate():
    bodies = re.split(r"^## .+$", RUNBOOKS.read_text(), flags=re.MULTILINE)[1:]
    for heading, body in zip(runbook_sections(RUNBOOKS.read_text()), bodies, strict=True):
        for part in ("**Means**", "**Severity**", "\n1. ", "\n2. ", "\n3. ", "Fixes:", "Escalate:"):
            assert part in body, (heading, part)


@pytest.mark.parametrize("base", [None, "https://wiki.example.com/dba/pgmon-runbooks/"])
def test_every_rendered_rule_links_its_own_section(base):
    overrides = {"pgmon_runbook_base_url": base} if base else {}
    rules = alert_rules(build_settings(group_data(**overrides), ENVIRON))
    expected_base = base.rstrip("/") if base else DEFAULT_RUNBOOK_BASE_URL
    sections = {anchor(heading) for heading in runbook_sections(RUNBOOKS.read_text())}
    for name, variants in rules.items():
        for rule in variants:
            url = rule["annotations"]["runbook_url"]
            assert url == f"{expected_base}#{anchor(name)}", name
            assert url.rpartition("#")[2] in sections, name


@pytest.mark.parametrize(
    "value, problem",
    [
        ("wiki.example.com/runbooks", "is not the http(s) address of the runbook page"),
        ("https://wiki.example.com/runbooks#x", "no query or fragment"),
        ("https://wiki.example.com/runbooks?page=1", "no query or fragment"),
        ("https://wiki.example.com/" + "a" * 130, "is longer than 150 characters"),
    ],
)
def test_the_runbook_base_is_checked(value, problem):
    message = error_for(group_data(pgmon_runbook_base_url=value))
    assert "pgmon_runbook_base_url: " in message and problem in message


# ---------------------------------------------------------------- the messages, through amtool

RUNBOOK = f"{DEFAULT_RUNBOOK_BASE_URL}#idleintransaction"


@needs_amtool
def test_both_channels_link_the_runbook_beside_the_dashboard(tmp_path):
    dashboard = link("db1:5432", "shop", GRAFANA)
    data = with_runbook(linked_group([alert()], dashboard), RUNBOOK)
    discord = render("pgmon.discord.message", data, tmp_path)
    assert discord.endswith(f"\n\n[Open the dashboard]({dashboard}) · [Runbook]({RUNBOOK})")
    telegram = render("pgmon.telegram.message", data, tmp_path)
    assert telegram.endswith(
        f'\n\n<a href="{dashboard.replace("&", "&amp;")}">Open the dashboard</a>'
        f' · <a href="{RUNBOOK}">Runbook</a>'
    )
    # Without pgmon_grafana_url (and on host alerts): the runbook alone.
    alone = with_runbook(group([alert()]), RUNBOOK)
    assert render("pgmon.discord.message", alone, tmp_path).endswith(f"\n\n[Runbook]({RUNBOOK})")
    assert render("pgmon.telegram.message", alone, tmp_path).endswith(
        f'\n\n<a href="{RUNBOOK}">Runbook</a>'
    )


@needs_amtool
@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)//x#a",
        'https://w.example.com/r"><b>x</b>#a',
        "https://w.example.com/r)[x](http://evil#a",
        "https://w.example.com/r#a b",
        "https://w.example.com/r",  # no anchor: not what the rules write
        "https://w.example.com/" + "r" * 144 + "#lockcontention",  # 181 characters
    ],
)
def test_a_runbook_link_not_in_the_shape_pgmon_writes_or_too_long_is_left_out(url, tmp_path):
    data = with_runbook(group([alert()]), url)
    assert "Runbook" not in render("pgmon.discord.message", data, tmp_path)
    assert "Runbook" not in render("pgmon.telegram.message", data, tmp_path)
