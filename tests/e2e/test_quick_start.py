"""The README's quick start, typed as it stands into one shell, against bare test hosts (issue 19).

The quick start's code blocks and the commands its prose quotes are read from README.md (with
tests/unit/test_readme.py's parsing) and carried out in their order: every shell line goes, unchanged
but for the substitutions below, to one bash reading them from a pipe as a person types them into a
terminal, and each must exit 0. The first line clones this repository's HEAD into a folder of the test's;
``python3 -m venv`` then makes a fresh controller environment there and ``pip install .`` installs pgmon
into it, with ``PIP_NO_INDEX=1``, ``PIP_FIND_LINKS`` naming the wheelhouse that
tests/e2e/prepare_machine.sh fills and ``PIP_CONFIG_FILE=/dev/null`` in the environment only: nothing
reaches a package index. pyinfra's confirmation prompt gets Enter, as the README says (any other prompt
gets "no", which fails the run). The SQL block runs as the superuser on the database host, the pg_hba.conf
line the prose quotes is added to its pg_hba.conf, and the group_data block is added to the clone's
``group_data/all.py``, as the README asks.

What differs in the lab, and only that:

- the repository's URL is this checkout's path; the database server ``db1.internal`` is the database
  host's address; ``PGMON_HOST=admin@monitor.example.com`` is ``root@<processing host>`` (``_sudo`` left
  out, as the README says for root), and in the second run ``admin@<processing host>``, an account with
  sudo as cloud images make one, with ``_sudo = True`` as written; the processing host's address stands for
  ``203.0.113.10`` in the pg_hba.conf line;
- the password in the role's SQL and the values in the secrets file (the editor is a script that writes
  the names the README lists, with the lab's values): the database password, the Discord webhook of a
  capture server on this machine (never discord.com) and Grafana's admin password;
- ``group_data/pgmon_hosts.py`` beside the README's all.py: the lab's images (``pgmon_images``, pulled
  from the network's registry, as the other test-host tests set them) and dashboard 9628 from a local
  server (the controller would fetch it from grafana.com);
- SSH: ``HOME`` is a folder of the test's whose ``~/.ssh/config`` names the network's key
  (``IdentityFile``) and its known_hosts file (``UserKnownHostsFile``, the hosts' keys as they made them);
  pyinfra reads both and no pyinfra flag is added. Host keys are checked against that file (pyinfra's
  default policy, accept-new, refuses a key that differs from the one there).

Each run (root, then admin) has its own database host and processing host on one --internal network;
the tests of a run share them and run in file order. Measured here: about 3.5 minutes for both runs,
of which the deploy ~40 s and send_test_alert.py ~32 s each (Alertmanager's default group_wait is 30 s).
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
import secrets
import shlex
import signal
import ssl
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tasks.settings import Discord, SettingsInput
from tests.hosts import CACHE as HOSTS_CACHE
from tests.hosts import Host, TestNetwork, load_manifest, sql_literal
from tests.unit.test_readme import _FENCE_RE, _SPAN_RE, README, sections

from .capture import CaptureServer
from .lab import DASHBOARD_FIXTURE, REPO, TESTED_IMAGES
from .test_bare_host import host_fingerprint
from .test_deploy import changed_operations

pytestmark = [pytest.mark.e2e, pytest.mark.test_hosts]

NETWORK = "pgmon-quick"
WHEELHOUSE = HOSTS_CACHE.parent / "wheelhouse"
# What the README writes where the lab has its own values.
REPOSITORY_URL = "<this repository's URL>"
README_TARGET = "PGMON_HOST=admin@monitor.example.com"
README_PROCESSING_HOST = "monitor.example.com"
README_PROCESSING_ADDRESS = "203.0.113.10"
README_DATABASE_HOST = "db1.internal"
README_PASSWORD = "'...'"
SUDO_LINE = re.compile(r"^_sudo = True\b.*$", re.MULTILINE)
SECRET_LINE = re.compile(r"^#\s+([A-Z][A-Z0-9_]*)=")
VERDICT_LINE = re.compile(
    r"^[ \t]*\[(?P<host>[^\]]+)\] pgmon: (?P<subject>.+?)\s+(?P<status>ok|FAIL)  +(?P<detail>.*)$",
    re.MULTILINE,
)
# What a verdict line holds that differs from run to run: a certificate's end and its fingerprint (which
# the README cuts short with "...").
RUN_VALUES = {
    r"\d{4}-\d{2}-\d{2}": r"\d{4}-\d{2}-\d{2}",
    r"SHA-256 [0-9A-F:]*\.\.\.": r"SHA-256 (?:[0-9A-F]{2}:){31}[0-9A-F]{2}",
}
CONFIRM_PROMPT = "Press enter to execute..."
CONFIRM_CHANGES = "Detected changes displayed above"
GRAFANA_PASSWORD_ENV = SettingsInput.model_fields["grafana_admin_password_env"].default
SECRET_KEY_ENV = SettingsInput.model_fields["grafana_secret_key_env"].default
MEASURED: dict[str, str] = {}


def measured(name: str, seconds: float) -> None:
    MEASURED[name] = f"{seconds:.1f}s"
    print(f"\n{name}: {seconds:.1f}s")


# ---------------------------------------------------------------- the README's quick start
@dataclass(frozen=True)
class Step:
    """One thing the quick start has a person do: ``shell`` (a line typed into the terminal), ``sql`` (run
    on a database server), ``hba`` (a pg_hba.conf line), ``group_data`` (Python for group_data/all.py) or
    ``verdict`` (what the run prints)."""

    kind: str
    text: str

    def runs_pyinfra(self, *words: str) -> bool:
        command = self.text.split("#", 1)[0].split()
        return self.kind == "shell" and "pyinfra" in command and all(w in command for w in words)

    @property
    def deploys(self) -> bool:
        """The deploy itself, not its --dry run."""
        return self.runs_pyinfra("deploy.py") and not self.runs_pyinfra("--dry")


def quick_start_steps(text: str) -> list[Step]:
    """The "Quick start" section in order: its code blocks by language, and the commands and pg_hba.conf
    line its prose quotes."""
    body = sections(text)["Quick start"]
    steps, prose_start = [], 0
    for block in _FENCE_RE.finditer(body):
        steps += _prose_steps(body[prose_start : block.start()])
        prose_start = block.end()
        language = block.group(0).split("\n", 1)[0].removeprefix("```")
        content = block.group(1)
        if language == "sql":
            steps.append(Step("sql", content))
        elif language == "python":
            steps.append(Step("group_data", content))
        elif all(line.startswith("[") for line in content.splitlines()):
            steps.append(Step("verdict", content))
        else:
            steps += [Step("shell", line) for line in content.splitlines() if line.strip()]
    return steps + _prose_steps(body[prose_start:])


def _prose_steps(prose: str) -> list[Step]:
    steps = []
    for span in _SPAN_RE.findall(prose):
        if span.startswith("pyinfra "):
            steps.append(Step("shell", span))
        elif span.startswith(("host ", "hostssl ")):
            steps.append(Step("hba", span))
    return steps


def replaced(text: str, old: str, new: str) -> str:
    """``text`` with its one ``old`` as ``new``; the README changing what the lab replaces fails here."""
    assert text.count(old) == 1, f"the quick start no longer writes {old!r} once in: {text}"
    return text.replace(old, new)


def verdict_lines(output: str) -> dict[str, re.Match]:
    return {m["subject"]: m for m in VERDICT_LINE.finditer(output)}


def detail_pattern(detail: str) -> re.Pattern:
    """A README verdict's detail as a pattern: its words exactly, run-dependent values as their shape."""
    parts = re.split(f"({'|'.join(RUN_VALUES)})", detail)  # odd indices: the values
    return re.compile(
        "".join(
            next(shape for value, shape in RUN_VALUES.items() if re.fullmatch(value, part))
            if index % 2
            else re.escape(part)
            for index, part in enumerate(parts)
        )
    )


# ---------------------------------------------------------------- a terminal
class Terminal:
    """One bash reading lines from a pipe, as a person types them into one terminal: ``cd``, an activated
    virtualenv and exported variables carry from one line to the next. pyinfra's prompts are answered
    as they appear (Enter for its confirmation, "no" for anything else)."""

    def __init__(self, cwd: Path, env: dict[str, str]):
        self.mark = f"quick-start-{secrets.token_hex(4)}"
        self.process = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.transcript = bytearray()
        self.answers: list[str] = []  # "Enter" or "no", for each prompt in turn
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while chunk := os.read(self.process.stdout.fileno(), 65536):
            with self._lock:
                self.transcript += chunk

    def _output_since(self, start: int) -> str:
        with self._lock:
            return self.transcript[start:].decode(errors="replace")

    def _send(self, text: str) -> None:
        self.process.stdin.write(text.encode())
        self.process.stdin.flush()

    def type(self, line: str, timeout: float = 600) -> tuple[int, str]:
        """``line`` typed and run; its exit status and what it printed."""
        with self._lock:
            start = len(self.transcript)
        # One compound command: bash reads all of it before running the line, so nothing is left in
        # the pipe for a prompt to read but the answer. The line's own comment ends at its newline; a
        # line that is only a comment would leave the braces empty, and runs nothing anyway.
        report = f"printf '\\n%s %s\\n' {self.mark} \"$?\"\n"
        only_comment = line.lstrip().startswith("#")
        self._send(f"{line}\n{report}" if only_comment else f"{{ {line}\n}}; {report}")
        done = re.compile(rf"\n{self.mark} (\d+)\n")
        answered = 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            output = self._output_since(start)
            if finished := done.search(output):
                return int(finished[1]), output[: finished.start()]
            prompt = output.rfind(CONFIRM_PROMPT)
            if prompt >= answered and output.rstrip(" ").endswith(CONFIRM_PROMPT):
                question = output[answered:prompt]
                answer = "" if CONFIRM_CHANGES in question else "no"
                self.answers.append(answer or "Enter")
                self._send(answer + "\n")
                answered = prompt + 1
            time.sleep(0.1)
        self.close()
        raise AssertionError(
            f"`{line}` did not finish within {timeout:.0f}s:\n{self._output_since(start)[-4000:]}"
        )

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(30)
        self._reader.join(10)


# ---------------------------------------------------------------- one run of the quick start
@dataclass
class QuickStart:
    """The quick start carried out on ``proc`` (processing host) and ``db`` (its database server), as
    ``user``, one step at a time in the README's order."""

    user: str
    # Neither secrets nor hosts (whose repr holds their databases' passwords) in a failure's report.
    proc: Host = field(repr=False)
    db: Host = field(repr=False)
    terminal: Terminal = field(repr=False)
    secrets: dict[str, str] = field(repr=False)
    lab_group_data: str = field(repr=False)
    steps: list[Step] = field(repr=False)
    done: int = 0
    clone: Path | None = None
    outputs: dict[Step, list[str]] = field(default_factory=dict, repr=False)

    def until(self, wanted) -> Step:
        """Carries out every step before the first one ``wanted(step)`` holds for, and returns that one."""
        while self.done < len(self.steps):
            step = self.steps[self.done]
            if wanted(step):
                return step
            self.perform(step)
        raise AssertionError("the quick start has no such step")

    def perform(self, step: Step) -> str:
        """Carries out ``step`` (the next one, or one done before, again); what a shell line printed."""
        output = getattr(self, f"_{step.kind}")(step.text)
        self.outputs.setdefault(step, []).append(output)
        if self.steps[self.done :][:1] == [step]:
            self.done += 1
        return output

    def _shell(self, line: str) -> str:
        line = line.replace(REPOSITORY_URL, str(REPO))
        if README_TARGET in line:
            line = replaced(line, README_TARGET, f"PGMON_HOST={self.user}@{self.proc.address}")
        started = time.monotonic()
        status, output = self.terminal.type(line)
        if command := line.split("#", 1)[0].strip():
            name = f"[{self.user}] {command}"
            measured(name + " (again)" if name in MEASURED else name, time.monotonic() - started)
        assert status == 0, f"`{line}` exited {status}:\n{output[-6000:]}"
        if self.clone is None and line.startswith("git clone"):
            self.clone = Path(self.terminal.type("pwd")[1].strip())
        return output

    def _sql(self, sql: str) -> str:
        return self.db.psql(replaced(sql, README_PASSWORD, sql_literal(self.database_password)))

    def _hba(self, line: str) -> str:
        entry = replaced(line, README_PROCESSING_ADDRESS, self.proc.address)
        return self.db.exec(
            f"echo {shlex.quote(entry)} | tee -a /etc/postgresql/*/main/pg_hba.conf && "
            "systemctl reload postgresql"
        ).stdout

    def _group_data(self, python: str) -> str:
        python = replaced(python, f'"{README_DATABASE_HOST}"', f'"{self.db.address}"')
        if self.user == "root":
            python = SUDO_LINE.sub("", python)
        settings = self.clone / "group_data/all.py"
        settings.write_text(settings.read_text() + "\n# The quick start's settings.\n" + python)
        (self.clone / "group_data/pgmon_hosts.py").write_text(self.lab_group_data)
        return python

    def _verdict(self, text: str) -> str:
        return text

    @property
    def database(self) -> dict:
        return readme_database(self.steps)

    @property
    def database_password(self) -> str:
        return self.secrets[self.database["password_env"]]


def readme_database(steps: list[Step]) -> dict:
    """The quick start's database entry, as its group_data block writes it."""
    (block,) = [step.text for step in steps if step.kind == "group_data"]
    assigned = {
        node.targets[0].id: node.value
        for node in ast.parse(block).body
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
    }
    (entry,) = ast.literal_eval(assigned["pgmon_databases"])
    return entry


def secrets_file(names: list[str], values: dict[str, str]) -> str:
    """The secrets file as a person fills it in: the README's names, the lab's values (quoted for the
    shell that sources the file)."""
    missing = [name for name in names if name not in values]
    assert not missing, (
        f"the quick start's secrets file names {missing}, which the lab has no value for"
    )
    return "".join(f"{name}={shlex.quote(values[name])}\n" for name in names)


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def network(lab):
    """The lab's engine runs the hosts (tests/hosts/prepare.sh, cached); the registry holds the lab's images."""
    assert any(WHEELHOUSE.glob("setuptools-*.whl")), (
        f"no wheelhouse in {WHEELHOUSE}: run tests/e2e/prepare_machine.sh first"
    )
    subprocess.run(
        ["bash", str(REPO / "tests/hosts/prepare.sh")], check=True, capture_output=True, timeout=900
    )
    load_manifest()
    started = time.monotonic()
    net = TestNetwork.create(NETWORK, images=tuple(TESTED_IMAGES.values()))
    measured("network + registry + push of the images", time.monotonic() - started)
    yield net
    net.close()
    print("\n" + "\n".join(f"  {k}: {v}" for k, v in MEASURED.items()))


@pytest.fixture(scope="module")
def discord(network):
    """Discord's webhook API where the processing host's containers reach this machine."""
    server = CaptureServer("discord", network.gateway, f"4242/{secrets.token_hex(16)}")
    yield server
    server.close()


@pytest.fixture(scope="module", params=["root", "admin"])
def quick_start(request, network, discord, dashboard_server):
    """The quick start as ``root``, then as ``admin`` (sudo): its own database and processing hosts, a
    shell whose HOME is the test's, the secrets the lab puts where the README has placeholders."""
    user = request.param
    started = time.monotonic()
    proc = network.start_host(f"proc-{user}", kind="processing")
    db = network.start_host(f"db-{user}", kind="database")
    if user != "root":
        proc.add_admin(user)
    measured(f"[{user}] processing and database hosts up", time.monotonic() - started)
    steps = quick_start_steps(README.read_text())
    database = readme_database(steps)
    db.psql(f"CREATE DATABASE {database['dbname']}")
    values = {
        database["password_env"]: "qu1ck:" + secrets.token_hex(8) + "@/#%'\"$x",
        Discord().webhook_url_env: f"http://{network.gateway}:{discord.port}/api/webhooks/"
        + discord._server.secret,
        GRAFANA_PASSWORD_ENV: "gr@fana:" + secrets.token_hex(8),
        SECRET_KEY_ENV: secrets.token_urlsafe(32),  # as `openssl rand -base64 32` makes one
    }
    dashboard = {
        "url": dashboard_server + "/api/dashboards/9628/revisions/{revision}/download",
        "sha256": hashlib.sha256(DASHBOARD_FIXTURE.read_bytes()).hexdigest(),
    }
    lab_group_data = f"pgmon_images = {TESTED_IMAGES!r}\npgmon_dashboard_9628 = {dashboard!r}\n"
    with tempfile.TemporaryDirectory(prefix=f"pgmon-quick-{user}-") as folder:
        home, lab_dir, laptop = (Path(folder) / name for name in ("home", "lab", "laptop"))
        for directory in (home / ".ssh", lab_dir, laptop):
            directory.mkdir(mode=0o700, parents=True)
        (home / ".ssh/config").write_text(
            f"Host {proc.address}\n    IdentityFile {network.ssh_key}\n"
            f"    UserKnownHostsFile {network.known_hosts}\n"
        )
        names = [m[1] for s in steps if s.kind == "shell" if (m := SECRET_LINE.match(s.text))]
        typed = lab_dir / "secrets"
        typed.touch(mode=0o600)
        typed.write_text(secrets_file(names, values))
        editor = lab_dir / "editor"
        editor.write_text(f'#!/bin/sh\nexec cat {shlex.quote(str(typed))} > "$1"\n')
        editor.chmod(0o700)
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("PGMON_", "PIP_")) and key not in ("PYTHONPATH", "VIRTUAL_ENV")
        }
        env.update(
            HOME=str(home),
            EDITOR=str(editor),
            PIP_NO_INDEX="1",
            PIP_FIND_LINKS=str(WHEELHOUSE),
            PIP_CONFIG_FILE=os.devnull,
        )
        terminal = Terminal(laptop, env)
        try:
            yield QuickStart(user, proc, db, terminal, values, lab_group_data, steps)
        finally:
            terminal.close()
            proc.stop()  # its part is done; the machine has two CPUs
            db.stop()


# ---------------------------------------------------------------- the tests
def test_install_into_a_fresh_clone_and_virtualenv(quick_start):
    quick_start.until(lambda step: step.kind != "shell")
    terminal, clone = quick_start.terminal, quick_start.clone
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout
    assert terminal.type("git rev-parse HEAD")[1].strip() == head.strip()
    # The README's commands from now on run the virtualenv's pyinfra, with pgmon installed beside it.
    assert terminal.type("command -v pyinfra")[1].strip() == str(clone / ".venv/bin/pyinfra")
    assert terminal.type("python -m pip show pgmon pyinfra | grep ^Name")[1].split() == [
        "Name:",
        "pgmon",
        "Name:",
        "pyinfra",
    ]


def test_the_database_server_has_the_monitoring_role(quick_start):
    quick_start.until(lambda step: step.kind == "group_data")
    user = quick_start.database["user"]
    assert (
        quick_start.db.psql(f"SELECT pg_has_role('{user}', 'pg_monitor', 'member')").strip() == "t"
    )
    assert (
        f"hostssl all {user} {quick_start.proc.address}/32"
        in quick_start.db.exec("cat /etc/postgresql/*/main/pg_hba.conf").stdout
    )


def test_the_dry_run_changes_nothing(quick_start):
    dry = quick_start.until(lambda step: step.runs_pyinfra("--dry"))
    proc = quick_start.proc
    assert (quick_start.clone / "group_data/all.py").exists()
    secrets_path = Path(quick_start.terminal.type("echo ~/.pgmon.env")[1].strip())
    assert secrets_path.stat().st_mode & 0o777 == 0o600, "the secrets file is readable by you only"
    if quick_start.user != "root":
        # sudo notes its first use in the account's home (~/.sudo_as_admin_successful): an admin who
        # has used it before, so that only what the run itself writes shows below.
        proc.ssh("sudo true", user=quick_start.user)
    proc.exec("touch /run/before-dry-run")
    output = quick_start.perform(dry)
    changed = proc.exec(
        "find /etc /opt /usr /srv /root /home /var/lib -xdev -newer /run/before-dry-run "
        "-not -path '/var/lib/systemd/*'"
    ).stdout.split()
    assert changed == [], output[-4000:]
    assert proc.exec("command -v docker", check=False).returncode != 0
    assert "pgmon: will " in output, output[-4000:]
    assert not quick_start.terminal.answers, "a --dry run asks nothing"


def test_the_deploy_ends_with_the_readme_verdict(quick_start):
    deploy = quick_start.until(lambda step: step.deploys)
    output = quick_start.perform(deploy)
    assert quick_start.terminal.answers == ["Enter"], "one prompt: pyinfra's confirmation"
    (readme_verdict,) = [s.text for s in quick_start.steps if s.kind == "verdict"]
    proc, db = quick_start.proc, quick_start.db
    readme_verdict = readme_verdict.replace(README_PROCESSING_HOST, proc.address).replace(
        README_DATABASE_HOST, db.address
    )
    expected, verdict = verdict_lines(readme_verdict), verdict_lines(output)
    assert list(verdict) == list(expected), output[-6000:]
    for subject, line in verdict.items():
        assert (line["host"], line["status"]) == (proc.address, "ok"), line[0]
        assert detail_pattern(expected[subject]["detail"]).fullmatch(line["detail"]), (
            f"README: {expected[subject][0]}\nrun:    {line[0]}"
        )


def test_grafana_opens_with_the_runs_certificate_and_the_exported_password(quick_start, tmp_path):
    """What the README has a person do next: open Grafana, compare the certificate's fingerprint with
    the run's, log in as admin with the exported password."""
    proc = quick_start.proc
    (deploy,) = [s for s in quick_start.outputs if s.deploys]
    https = verdict_lines(quick_start.outputs[deploy][0])["grafana https"]["detail"]
    served = ssl.get_server_certificate((proc.address, 3000), timeout=10)
    fingerprint = hashlib.sha256(ssl.PEM_cert_to_DER_cert(served)).hexdigest().upper()
    assert https.endswith("SHA-256 " + ":".join(re.findall("..", fingerprint))), https
    trusted = tmp_path / "grafana.crt"
    trusted.write_text(served)
    password = quick_start.secrets[GRAFANA_PASSWORD_ENV]
    user = requests.get(
        f"https://{proc.address}:3000/api/user",
        auth=("admin", password),
        verify=str(trusted),
        timeout=10,
    )
    assert user.status_code == 200 and user.json()["login"] == "admin", user.text


def test_the_test_alert_reaches_discord(quick_start, discord):
    send = quick_start.until(lambda step: step.runs_pyinfra("send_test_alert.py"))
    discord.clear()
    output = quick_start.perform(send)
    assert "pgmon: test alert: discord   ok    1 message(s) accepted" in output, output[-4000:]
    discord.wait_for(lambda message: "PgmonTestAlert" in message.text, timeout=10)
    assert quick_start.done == len(quick_start.steps), (
        "every step of the quick start was carried out"
    )


def test_the_deploy_again_changes_nothing(quick_start):
    (deploy,) = [s for s in quick_start.outputs if s.deploys]
    before = host_fingerprint(quick_start.proc)
    output = quick_start.perform(deploy)
    assert changed_operations(output) == [], output[-4000:]
    assert all(line["status"] == "ok" for line in verdict_lines(output).values())
    assert host_fingerprint(quick_start.proc) == before
