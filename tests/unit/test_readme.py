"""The README cannot drift from the code.

A newcomer types the demo's and the quick start's commands as they stand, so every file they name must
exist, every ``pgmon_*`` key they set must be a setting, every ``*.py`` they give pyinfra must be one of
this repository's top-level deploy files, every pyinfra option must be one pyinfra has, and every link to
a file or a heading must resolve. The "Tests" section must be what CI runs, every symptom Troubleshooting
quotes from pgmon must be words its code prints, and docs/configuration.md must list every setting.
``readme_drift`` and the other ``*_problems`` return what no longer holds; the ``drifted`` tests feed them
altered copies of the README to show that each check can fail.
"""

import ast
import importlib.util
import re
import warnings
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from tasks.render.prometheus import render_recording_rules, render_rules
from tasks.settings import (
    SETTING_PREFIX,
    AlertTiming,
    Dashboard9628,
    Database,
    Discord,
    DiscoveredServer,
    GrafanaCertificate,
    RemoteWrite,
    SettingsInput,
    Silence,
    Telegram,
    Watchdog,
)

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
# Keys only the demo reads (demo.py and tasks/demo/), besides the settings it shares with the deploy.
DEMO_KEY_PREFIX = "pgmon_demo_"
# The README sections a newcomer runs from top to bottom.
RUN_SECTIONS = ("Try it", "Quick start")
# The documents whose relative links and anchors are checked.
LINKED_DOCUMENTS = ("README.md", "CONTRIBUTING.md", "docs")

_HEADING_RE = re.compile(r"^(#{1,6}) (.+)$", re.MULTILINE)
_FENCE_RE = re.compile(r"^```[a-z]*\n(.*?)^```$", re.MULTILINE | re.DOTALL)
_SPAN_RE = re.compile(r"`([^`\n]+)`")
_LINK_RE = re.compile(r"\]\(([^)\s]+)\)")
_KEY_RE = re.compile(r"\b(pgmon_[a-z0-9_]+)\s*=")
_FILE_RE = re.compile(r"(?<![\w~/.$:-])((?:[\w.-]+/)*[\w-]+\.(?:py|md|toml))\b")
_ENV_LINE_RE = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=", re.MULTILINE)


def sections(text: str) -> dict[str, str]:
    """Each ``## `` section's title -> its text (its sub-sections included)."""
    parts = re.split(r"^## (.+)$", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def run_text(text: str) -> tuple[list[str], list[str]]:
    """The code blocks and inline code spans of the sections a newcomer runs."""
    blocks, spans = [], []
    for title, body in sections(text).items():
        if title.startswith(RUN_SECTIONS):
            blocks += _FENCE_RE.findall(body)
            spans += _SPAN_RE.findall(_FENCE_RE.sub("", body))
    return blocks, spans


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = _FENCE_RE.sub("", path.read_text())
    return {anchor(title) for _, title in _HEADING_RE.findall(text)}


def pyinfra_options() -> set[str]:
    """The options pyinfra's command line declares, read from its source: importing pyinfra_cli would
    monkey-patch the whole test process with gevent."""
    cli = Path(importlib.util.find_spec("pyinfra_cli").origin).with_name("cli.py")
    return set(re.findall(r'"(--?[a-z][a-z0-9-]*)"', cli.read_text()))


def demo_code(root: Path) -> str | None:
    """The source of demo.py and the package it calls; None, with a warning, while demo.py is absent."""
    demo = root / "demo.py"
    if not demo.exists():
        warnings.warn(
            "demo.py is not in this checkout: the README's demo.py and pgmon_demo_* keys are not checked",
            stacklevel=2,
        )
        return None
    package = sorted((root / "tasks" / "demo").glob("*.py"))
    return "\n".join(path.read_text() for path in [demo, *package])


def readme_drift(text: str, root: Path = ROOT) -> list[str]:
    """What the README says that the repository does not hold."""
    blocks, spans = run_text(text)
    if not blocks:
        return ["the README has no demo or quick-start code block"]
    demo_source = demo_code(root)
    pending = {"demo.py"} if demo_source is None else set()
    problems = []
    runnable = blocks + spans
    for name in sorted({f for chunk in runnable for f in _FILE_RE.findall(chunk)} - pending):
        if not (root / name).exists():
            problems.append(f"{name}: no such file")
    options = pyinfra_options()
    for chunk in runnable:
        for line in chunk.splitlines():
            problems += _pyinfra_problems(line, root, options, pending)
    for key in sorted({k for chunk in runnable for k in _KEY_RE.findall(chunk)}):
        if key.startswith(DEMO_KEY_PREFIX):
            if demo_source is not None and f'"{key}"' not in demo_source:
                problems.append(f"{key}: the demo does not read it")
        elif key.removeprefix(SETTING_PREFIX) not in SettingsInput.model_fields:
            problems.append(f"{key}: not a pgmon setting")
    problems += _group_data_problems(blocks, "\n".join(runnable))
    problems += _tests_section_problems(text, root)
    return problems


def _pyinfra_problems(line: str, root: Path, options: set[str], pending: set[str]) -> list[str]:
    words = line.split("#", 1)[0].split()
    if "pyinfra" not in words:
        return []
    problems = []
    args = words[words.index("pyinfra") + 1 :]
    positional = [word for word in args if not word.startswith("-") and "=" not in word]
    for word in args:
        option = word.split("=", 1)[0]
        if word.startswith("-") and option not in options and not re.fullmatch(r"-v+", option):
            problems.append(f"{line.strip()}: pyinfra has no option {option}")
        elif word.endswith(".py") and word not in pending and not (root / word).is_file():
            problems.append(f"{line.strip()}: {word} is not a deploy file at the top level")
    if not positional or positional[0] != "inventory.py":
        problems.append(f"{line.strip()}: the inventory (inventory.py) must come first")
    return problems


def _group_data_problems(blocks: list[str], runnable: str) -> list[str]:
    """The quick start's group_data is valid as it stands, and its secrets file names every variable."""
    problems = []
    for block in blocks:
        if "pgmon_databases" not in block:
            continue
        try:
            tree = ast.parse(block)
        except SyntaxError as error:
            return [f"the group_data example is not Python: {error}"]
        data = {}
        for node in tree.body:
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
                data[node.targets[0].id] = ast.literal_eval(node.value)
        settings = {
            k.removeprefix(SETTING_PREFIX): v
            for k, v in data.items()
            if k.startswith(SETTING_PREFIX)
        }
        try:
            config = SettingsInput(**settings)
        except ValueError as error:
            return [f"the group_data example is refused: {error}"]
        exported = set(_ENV_LINE_RE.findall(runnable))
        needed = {db.password_env for db in config.databases} | {config.grafana_admin_password_env}
        if config.grafana_secret_key_env:
            needed.add(config.grafana_secret_key_env)
        if config.discord:
            needed.add(config.discord.webhook_url_env)
        if config.telegram:
            needed |= {config.telegram.bot_token_env, config.telegram.chat_id_env}
        problems += [
            f"{name}: the secrets file does not set it" for name in sorted(needed - exported)
        ]
    return problems


def _tests_section_problems(text: str, root: Path) -> list[str]:
    """The README's "Tests" commands are exactly what CI runs, in order."""
    blocks = _FENCE_RE.findall(sections(text).get("Tests", ""))
    commands = blocks[0].splitlines() if blocks else []
    ci = [line for line in (root / ".ci" / "run").read_text().splitlines() if line in commands]
    if not commands or ci != commands:
        return [f"Tests: {commands} is not what .ci/run runs"]
    return []


# Troubleshooting phases whose symptoms pgmon prints (the others quote pip, PostgreSQL and its driver), and
# where their words come from: pgmon's code, and for SSH also pyinfra's own.
PRINTED_BY = {
    "SSH": ("pgmon", "pyinfra"),
    "validation": ("pgmon",),
    "deploy": ("pgmon",),
    "verification": ("pgmon",),
    "alert delivery": ("pgmon",),
}
_ROW_RE = re.compile(r"^\| ([^|]+?) \| (.+?) \| .+\|$", re.MULTILINE)


def string_templates(paths) -> list[list[str | None]]:
    """Every string literal in ``paths`` but docstrings: its constant parts, None where an f-string puts
    a value."""
    templates = []
    for path in paths:
        tree = ast.parse(path.read_text())
        docstrings = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}
        for node in ast.walk(tree):
            if id(node) in docstrings:
                continue
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                templates.append([node.value])
            elif isinstance(node, ast.JoinedStr):
                templates.append(
                    [v.value if isinstance(v, ast.Constant) else None for v in node.values]
                )
    return templates


def printable(quote: str, template: list[str | None]) -> bool:
    """Whether ``quote`` is a stretch of what ``template`` prints, with values standing for at most half
    of it (an example's host name, a count), so that the words themselves are pgmon's."""
    limit = len(quote) // 2

    def fits(index: int, position: int, values: int) -> bool:
        if position == len(quote):
            return True
        if index == len(template):
            return False
        part, rest = template[index], quote[position:]
        if part is None:
            return any(
                fits(index + 1, position + taken, values + taken)
                for taken in range(1, min(len(rest), limit - values) + 1)
            )
        if rest.startswith(part):
            return fits(index + 1, position + len(part), values)
        return part.startswith(rest)

    for index, part in enumerate(template):
        if part is None:
            if fits(index, 0, 0):
                return True
        elif quote in part or any(
            part.endswith(quote[:taken]) and fits(index + 1, taken, 0)
            for taken in range(1, min(len(part), len(quote)) + 1)
        ):
            return True
    return False


def troubleshooting_problems(text: str, sources: dict[str, list]) -> list[str]:
    """Each symptom the Troubleshooting table quotes from pgmon (or pyinfra) is a stretch of a string that
    their code prints; ``...`` stands for what the quote leaves out."""
    problems = []
    for phase, symptom in _ROW_RE.findall(sections(text).get("Troubleshooting", "")):
        if phase not in PRINTED_BY:
            continue
        templates = [t for origin in PRINTED_BY[phase] for t in sources[origin]]
        for quote in _SPAN_RE.findall(symptom):
            for stretch in (s.strip() for s in quote.split("...")):
                if len(stretch) >= 4 and not any(printable(stretch, t) for t in templates):
                    problems.append(f"Troubleshooting, {phase}: {stretch!r} is printed nowhere")
    return problems


def printed_strings() -> dict[str, list]:
    pyinfra = Path(importlib.util.find_spec("pyinfra").origin).parent
    return {
        "pgmon": string_templates([*(ROOT / "tasks").rglob("*.py"), *ROOT.glob("*.py")]),
        "pyinfra": string_templates(
            [*(pyinfra / "api").glob("*.py"), pyinfra / "connectors/ssh.py"]
        ),
    }


def link_problems(path: Path, root: Path = ROOT) -> list[str]:
    problems = []
    text = _FENCE_RE.sub("", path.read_text())
    for target in _LINK_RE.findall(text):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, fragment = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        if not linked.exists():
            problems.append(f"{path.relative_to(root)}: {target}: no such file")
        elif fragment and linked.suffix == ".md" and fragment not in anchors(linked):
            problems.append(f"{path.relative_to(root)}: {target}: no such heading")
    return problems


def test_readme_commands_files_and_settings_exist():
    assert readme_drift(README.read_text()) == []


@pytest.mark.parametrize(
    "path",
    sorted(
        p
        for name in LINKED_DOCUMENTS
        for p in ((ROOT / name).glob("*.md") if (ROOT / name).is_dir() else [ROOT / name])
    ),
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_links_to_files_and_headings_resolve(path):
    assert link_problems(path) == []


@pytest.fixture(scope="module")
def printed():
    return printed_strings()


def test_troubleshooting_quotes_what_pgmon_prints(printed):
    assert troubleshooting_problems(README.read_text(), printed) == []


@pytest.mark.parametrize(
    "old, new",
    [
        ("`its exporter does not answer`", "`its exporter is not answering`"),
        ("`0 of 1 message(s) sent within 360s`", "`0 of 1 messages sent within 360s`"),
        ("`Could not resolve hostname`", "`Could not resolve the hostname`"),
    ],
)
def test_a_drifted_troubleshooting_quote_is_caught(old, new, printed):
    assert old in README_TEXT
    assert troubleshooting_problems(README_TEXT.replace(old, new, 1), printed) != []


def test_readme_links_every_document_in_docs():
    text = README.read_text()
    assert [
        p.name for p in sorted((ROOT / "docs").glob("*.md")) if f"docs/{p.name}" not in text
    ] == []


def _fields(model: type[BaseModel]) -> list[str]:
    return [field.alias or name for name, field in model.model_fields.items()]


def test_configuration_reference_lists_every_setting_and_key():
    reference = (ROOT / "docs" / "configuration.md").read_text()
    missing = [
        SETTING_PREFIX + name
        for name in SettingsInput.model_fields
        if f"`{SETTING_PREFIX}{name}`" not in reference
    ]
    for model in (
        Database,
        DiscoveredServer,
        Discord,
        Telegram,
        Watchdog,
        Dashboard9628,
        AlertTiming,
        Silence,
        GrafanaCertificate,
        RemoteWrite,
    ):
        missing += [
            f"{model.__name__}.{key}"
            for key in _fields(model)
            if f"`{key}`" not in reference and f"`.{key}`" not in reference
        ]
    assert missing == []


README_TEXT = README.read_text()


@pytest.mark.parametrize(
    "old, new, expected",
    [
        ("inventory.py deploy.py --dry", "inventory.py deploy2.py --dry", "deploy2.py"),
        ("inventory.py deploy.py --dry", "inventory.py deploy.py --dryrun", "--dryrun"),
        ("pyinfra inventory.py deploy.py --dry", "pyinfra deploy.py --dry", "must come first"),
        ("pgmon_discord = {}", "pgmon_dicsord = {}", "pgmon_dicsord"),
        ('"dbname": "shop"', '"db": "shop"', "refused"),
        ("#   PGMON_SHOP_PASSWORD=", "#   PGMON_SHOP_PASS=", "PGMON_SHOP_PASSWORD"),
        ("`group_data/all.py`", "`group_data/main.py`", "group_data/main.py"),
        ("tests/run\n```", "tests/run -x\n```", "Tests"),
    ],
    ids=[
        "deploy-file",
        "pyinfra-option",
        "inventory-first",
        "setting",
        "group-data",
        "secrets-file",
        "named-file",
        "tests-section",
    ],
)
def test_a_drifted_readme_line_is_caught(old, new, expected):
    assert old in README_TEXT
    problems = readme_drift(README_TEXT.replace(old, new, 1))
    assert any(expected in problem for problem in problems), problems


@pytest.mark.parametrize(
    "old, new",
    [
        ("(docs/configuration.md)", "(docs/configurations.md)"),
        ("(#pg_hbaconf-and-ssl)", "(#pg-hba)"),
        ("(docs/security.md#https-for-grafana)", "(docs/security.md#https)"),
    ],
)
def test_a_drifted_link_is_caught(old, new, tmp_path):
    assert old in README_TEXT
    drifted = tmp_path / "README.md"
    drifted.write_text(README_TEXT.replace(old, new, 1))
    (tmp_path / "docs").symlink_to(ROOT / "docs")
    assert link_problems(drifted, tmp_path) != []


def test_a_drifted_demo_key_is_caught():
    if not (ROOT / "demo.py").exists():
        pytest.skip("demo.py is not in this checkout")
    old = "--data pgmon_demo_incident=start"
    assert old in README_TEXT
    problems = readme_drift(README_TEXT.replace(old, "--data pgmon_demo_incidents=start", 1))
    assert any("pgmon_demo_incidents" in problem for problem in problems), problems


def test_the_readme_verdict_counts_the_rules_prometheus_loads(settings):
    """The quick start's e2e test compares the run's verdict with the README's, and the rule count is part of
    it: every rule name, alerting and recording, as check_prometheus counts them."""
    (count,) = re.findall(r"ready, config and (\d+) rules loaded", README.read_text())
    names = {
        rule.get("alert") or rule.get("record")
        for rendered in (render_rules(settings), render_recording_rules(settings))
        for group in yaml.safe_load(rendered)["groups"]
        for rule in group["rules"]
    }
    assert int(count) == len(names)


def test_the_versions_table_names_the_defaults_their_notes_and_what_the_tests_ran():
    from tasks.settings.images import DEFAULT_IMAGES
    from tests.e2e.lab import TESTED_IMAGES

    table = sections(README.read_text())["Requirements"].split("### Versions", 1)[1]
    rows = {
        cells[0]: cells[1:]
        for line in table.splitlines()
        if line.startswith("| ") and not line.startswith("| component")
        for cells in [[cell.strip() for cell in line.strip("|").split("|")]]
    }
    names = {
        "Prometheus": "prometheus",
        "Alertmanager": "alertmanager",
        "postgres_exporter": "postgres_exporter",
        "node_exporter": "node_exporter",
        "Grafana": "grafana",
    }
    assert set(rows) == set(names)
    for row, component in names.items():
        default, notes, tested = rows[row][:3]
        image = DEFAULT_IMAGES[component]
        assert default == f"`{image}`", row
        tag = image.rsplit(":", 1)[1]
        assert (
            notes.startswith(f"[{tag}](https://github.com/")
            and f"/releases/tag/v{tag.lstrip('v')})" in notes
        ), row
        tested_tag = TESTED_IMAGES[component].rsplit(":", 1)[1].lstrip("v")
        assert tested in (tested_tag, "a stand-in"), row


def test_the_rule_count_in_what_you_get_is_the_rules_pgmon_has():
    from tests.unit.test_runbooks import every_rule

    claimed = re.search(r"Discord and Telegram: (\d+) rules", README.read_text())
    assert claimed and int(claimed[1]) == len(every_rule())
