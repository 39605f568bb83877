"""Tests of the Grafana stand-in (tests/e2e/images/grafana), run in-process on 127.0.0.1.

No Docker: the server runs in this process with temporary provisioning and data
folders, and a fake Prometheus on the loopback answers its queries. run.sh is tested
with the host's busybox sh. Waits poll with a deadline, never sleep blindly.
"""

import base64
import importlib.util
import io
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

GRAFANA_DIR = Path(__file__).resolve().parents[1] / "e2e" / "images" / "grafana"
_spec = importlib.util.spec_from_file_location("grafana_standin", GRAFANA_DIR / "standin.py")
standin = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(standin)

_OPENER = urllib.request.build_opener(
    urllib.request.ProxyHandler({})
)  # loopback only, never a proxy


def wait_until(check, timeout=10.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def call(port, path, auth=("admin", "admin"), body=None, method=None):
    """(status, parsed JSON) of one request to the stand-in."""
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = (
            "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        )
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=data, headers=headers, method=method
    )
    try:
        with _OPENER.open(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


# ---------------------------------------------------------------- a fake Prometheus


class FakePrometheus:
    """Answers /api/v1/query and /api/v1/query_range like Prometheus; records the queries."""

    def __init__(self):
        self.queries = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                params = {k: v[0] for k, v in form.items()}
                fake.queries.append((self.path, params))
                status, payload = fake.answer(self.path, params)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @staticmethod
    def answer(path, params):
        query = params.get("query", "")
        if "syntax error" in query:
            return 400, {
                "status": "error",
                "errorType": "bad_data",
                "error": "parse error: unexpected identifier",
            }
        if path == "/api/v1/query" and query == "1+1":
            return 200, {
                "status": "success",
                "data": {"resultType": "scalar", "result": [float(params["time"]), "2"]},
            }
        if path == "/api/v1/query":
            return 200, {
                "status": "success",
                "data": {
                    "resultType": "vector",
                    "result": [
                        {
                            "metric": {"__name__": "pg_up", "database": "shop"},
                            "value": [float(params["time"]), "1"],
                        }
                    ],
                },
            }
        start, step = float(params["start"]), float(params["step"])
        return 200, {
            "status": "success",
            "data": {
                "resultType": "matrix",
                "result": [
                    {
                        "metric": {"__name__": "pg_up", "database": "shop"},
                        "values": [[start, "1"], [start + step, "NaN"], [start + 2 * step, "1"]],
                    },
                    {
                        "metric": {"__name__": "pg_up", "database": "ledger"},
                        "values": [[start, "0"]],
                    },
                ],
            },
        }

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def prometheus():
    fake = FakePrometheus()
    yield fake
    fake.close()


def free_port():
    """A loopback port nobody listens on (right after this returns)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- the stand-in, in-process

DASHBOARD = {
    "uid": "pg-overview",
    "title": "PostgreSQL overview",
    "tags": ["pgmon"],
    "panels": [
        {
            "type": "stat",
            "title": "Up",
            "datasource": {"type": "prometheus", "uid": "prom"},
            "targets": [{"refId": "A", "expr": "pg_up"}],
        }
    ],
}


@pytest.fixture
def site(tmp_path, prometheus):
    """Provisioning like pgmon's: one Prometheus data source, one dashboard folder."""
    prov, dashboards = tmp_path / "provisioning", tmp_path / "dashboards"
    (prov / "datasources").mkdir(parents=True)
    (prov / "dashboards").mkdir()
    dashboards.mkdir()
    (prov / "datasources" / "pgmon.yml").write_text(f"""
apiVersion: 1
deleteDatasources:
  - name: Old
    orgId: 1
datasources:
  - name: Prometheus
    type: prometheus
    uid: prom
    access: proxy
    url: ${{PROM_URL}}
    isDefault: true
    editable: false
    jsonData:
      httpMethod: POST
      timeInterval: 15s
    secureJsonData:
      httpHeaderValue1: do-not-show
  - name: Dead
    type: prometheus
    uid: dead
    url: http://127.0.0.1:{free_port()}
""")
    (prov / "dashboards" / "pgmon.yml").write_text(f"""
apiVersion: 1
providers:
  - name: pgmon
    folder: PostgreSQL
    type: file
    disableDeletion: false
    updateIntervalSeconds: 1
    allowUiUpdates: false
    options:
      path: {dashboards}
      foldersFromFilesStructure: false
""")
    (dashboards / "overview.json").write_text(json.dumps(DASHBOARD))
    env = {
        "PROM_URL": prometheus.url,
        "GF_PATHS_DATA": str(tmp_path / "data"),
        "GF_PATHS_PROVISIONING": str(prov),
        "GF_SERVER_HTTP_ADDR": "127.0.0.1",
        "GF_SERVER_HTTP_PORT": "0",
    }
    return {"env": env, "dashboards": dashboards, "data": tmp_path / "data", "prov": prov}


@pytest.fixture
def start():
    started = []

    def _start(env):
        app = standin.Grafana(standin.load_settings(env=env), env=env).start()
        started.append(app)
        return app

    yield _start
    for app in started:
        app.stop()


def test_health_is_open_and_everything_else_needs_basic_auth(site, start):
    port = start(site["env"]).port
    assert call(port, "/api/health", auth=None) == (
        200,
        {"commit": "standin", "database": "ok", "version": "12.2.1"},
    )
    status, body = call(port, "/api/search", auth=None)
    assert (status, body["message"]) == (401, "Unauthorized")
    status, body = call(port, "/api/search", auth=("admin", "wrong"))
    assert (status, body["message"]) == (401, "Invalid username or password")
    status, body = call(port, "/api/datasources", auth=("nobody", "admin"))
    assert (status, body["message"]) == (401, "Invalid username or password")
    assert call(port, "/api/search")[0] == 200


def test_an_empty_admin_password_lets_nobody_in(site, start):
    # What the official image does when run.sh could not read GF_SECURITY_ADMIN_PASSWORD__FILE:
    # Grafana starts with an empty admin password, and every login fails.
    port = start(site["env"] | {"GF_SECURITY_ADMIN_PASSWORD": ""}).port
    assert call(port, "/api/health", auth=None)[0] == 200
    assert call(port, "/api/user", auth=("admin", ""))[0] == 401
    assert call(port, "/api/user", auth=("admin", "admin"))[0] == 401


def test_provisioned_datasource_and_its_health_check(site, start, prometheus):
    port = start(site["env"]).port
    status, ds = call(port, "/api/datasources/uid/prom")
    assert status == 200
    assert (ds["name"], ds["type"], ds["url"], ds["isDefault"], ds["readOnly"]) == (
        "Prometheus",
        "prometheus",
        prometheus.url,
        True,
        True,
    )
    assert ds["jsonData"] == {"httpMethod": "POST", "timeInterval": "15s"}
    assert ds["secureJsonFields"] == {"httpHeaderValue1": True} and "do-not-show" not in json.dumps(
        ds
    )
    assert [d["uid"] for d in call(port, "/api/datasources")[1]] == ["prom", "dead"]
    assert call(port, "/api/datasources/uid/nope") == (404, {"message": "Data source not found"})

    assert call(port, "/api/datasources/uid/prom/health") == (
        200,
        {"status": "OK", "message": "Successfully queried the Prometheus API."},
    )
    assert ("/api/v1/query", "1+1") in [(p, q.get("query")) for p, q in prometheus.queries]
    status, body = call(port, "/api/datasources/uid/dead/health")
    assert (status, body["status"]) == (400, "ERROR")


def test_provisioned_dashboard_is_rescanned_and_removed_with_its_file(site, start):
    port = start(site["env"]).port
    status, got = call(port, "/api/dashboards/uid/pg-overview")
    assert status == 200
    assert got["dashboard"]["title"] == "PostgreSQL overview" and got["dashboard"]["version"] == 1
    assert got["meta"]["provisioned"] is True and got["meta"]["folderTitle"] == "PostgreSQL"
    hits = call(port, "/api/search?type=dash-db&query=postgres")[1]
    assert [(h["uid"], h["type"], h["url"]) for h in hits] == [
        ("pg-overview", "dash-db", "/d/pg-overview/postgresql-overview")
    ]

    (site["dashboards"] / "overview.json").write_text(
        json.dumps(DASHBOARD | {"title": "PostgreSQL v2"})
    )
    got = wait_until(
        lambda: (lambda r: r[1] if r[1]["dashboard"]["version"] == 2 else None)(
            call(port, "/api/dashboards/uid/pg-overview")
        )
    )
    assert got["dashboard"]["title"] == "PostgreSQL v2" and got["dashboard"]["id"] == 1

    (site["dashboards"] / "overview.json").unlink()
    wait_until(lambda: call(port, "/api/dashboards/uid/pg-overview")[0] == 404)
    assert call(port, "/api/dashboards/uid/pg-overview")[1] == {"message": "Dashboard not found"}


TEMPLATE = {
    "__inputs": [
        {
            "name": "DS_PROMETHEUS",
            "label": "Prometheus",
            "type": "datasource",
            "pluginId": "prometheus",
            "pluginName": "Prometheus",
        }
    ],
    "__requires": [
        {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"}
    ],
    "uid": "000000039",
    "title": "PostgreSQL Database",
    "revision": 7,
    "id": None,
    "panels": [
        {"datasource": "${DS_PROMETHEUS}", "targets": [{"expr": 'pg_up{instance="$instance"}'}]}
    ],
    "templating": {
        "list": [
            {
                "name": "instance",
                "datasource": {"uid": "${DS_PROMETHEUS}"},
                "query": "label_values(pg_up, instance)",
            }
        ]
    },
}
INPUTS = [
    {"name": "DS_PROMETHEUS", "type": "datasource", "pluginId": "prometheus", "value": "prom"}
]


def test_import_substitutes_inputs_and_refuses_to_clobber_without_overwrite(site, start):
    port = start(site["env"]).port
    status, body = call(
        port,
        "/api/dashboards/import",
        body={"dashboard": TEMPLATE, "overwrite": False, "inputs": INPUTS, "folderUid": ""},
    )
    assert status == 200, body
    assert body | {"dashboardId": 0} == {
        "uid": "000000039",
        "pluginId": "",
        "title": "PostgreSQL Database",
        "imported": True,
        "importedUri": "db/postgresql-database",
        "importedUrl": "/d/000000039/postgresql-database",
        "slug": "postgresql-database",
        "dashboardId": 0,
        "folderId": 0,
        "folderUid": "",
        "importedRevision": 7,
        "revision": 7,
        "description": "",
        "path": "",
        "removed": False,
    }
    stored = call(port, "/api/dashboards/uid/000000039")[1]
    model = stored["dashboard"]
    assert model["panels"][0]["datasource"] == "prom"
    assert model["templating"]["list"][0]["datasource"] == {"uid": "prom"}
    assert (
        model["panels"][0]["targets"][0]["expr"] == 'pg_up{instance="$instance"}'
    )  # not an input: kept
    assert "__inputs" not in model and "__requires" not in model
    assert stored["meta"]["provisioned"] is False and model["version"] == 1

    status, body = call(
        port,
        "/api/dashboards/import",
        body={"dashboard": TEMPLATE, "overwrite": False, "inputs": INPUTS},
    )
    assert (status, body) == (
        412,
        {"status": "version-mismatch", "message": "The dashboard has been changed by someone else"},
    )
    status, body = call(
        port,
        "/api/dashboards/import",
        body={"dashboard": TEMPLATE, "overwrite": True, "inputs": INPUTS},
    )
    assert (
        status == 200
        and call(port, "/api/dashboards/uid/000000039")[1]["dashboard"]["version"] == 2
    )


def test_import_with_a_missing_input_is_refused_like_grafana(site, start):
    port = start(site["env"]).port
    wrong_name = [dict(INPUTS[0], name="DS_OTHER")]
    for inputs in ([], wrong_name, [dict(INPUTS[0], type="constant")]):
        status, body = call(
            port,
            "/api/dashboards/import",
            body={"dashboard": TEMPLATE, "overwrite": True, "inputs": inputs},
        )
        assert (status, body) == (
            400,
            {"message": "dashboard import failed: missing dashboard input variable DS_PROMETHEUS"},
        )
    assert call(port, "/api/dashboards/uid/000000039")[0] == 404
    assert call(port, "/api/dashboards/import", body={"overwrite": True})[0] == 422


def test_import_of_the_9628_fixture_needs_valid_credentials_and_binds_every_datasource(site, start):
    fixture = json.loads(
        (Path(__file__).resolve().parents[1] / "fixtures" / "dashboard-9628.json").read_text()
    )
    port = start(site["env"]).port
    body = {"dashboard": fixture, "overwrite": True, "inputs": INPUTS, "folderUid": ""}
    for auth in (None, ("admin", "wrong")):
        status, answer = call(port, "/api/dashboards/import", auth=auth, body=body)
        assert status == 401, answer
    assert (
        call(port, "/api/dashboards/uid/000000039")[0] == 404
    )  # nothing stored by a refused import
    status, answer = call(port, "/api/dashboards/import", body=body)
    assert status == 200 and answer["title"] == "PostgreSQL Database", answer
    model = call(port, "/api/dashboards/uid/000000039")[1]["dashboard"]
    assert "${DS_PROMETHEUS}" not in json.dumps(model) and "__requires" not in model
    datasources = {p.get("datasource") for p in model["panels"] if p["type"] != "row"}
    datasources |= {v["datasource"] for v in model["templating"]["list"] if "datasource" in v}
    assert datasources == {"prom"}


def test_ds_query_returns_frames_from_prometheus(site, start, prometheus):
    port = start(site["env"]).port
    status, body = call(
        port,
        "/api/ds/query",
        body={
            "from": "now-1h",
            "to": "now",
            "queries": [
                {
                    "refId": "A",
                    "datasource": {"uid": "prom", "type": "prometheus"},
                    "expr": "max(pg_up) by (database)",
                    "legendFormat": "{{database}}",
                    "maxDataPoints": 100,
                },
                {"refId": "B", "datasource": {"uid": "prom"}, "expr": "pg_up", "instant": True},
            ],
        },
    )
    assert status == 200, body
    frames = body["results"]["A"]["frames"]
    assert body["results"]["A"]["status"] == 200 and len(frames) == 2
    first = frames[0]
    assert [f["name"] for f in first["schema"]["fields"]] == ["Time", "Value"]
    assert first["schema"]["fields"][1]["labels"] == {"__name__": "pg_up", "database": "shop"}
    assert first["schema"]["fields"][1]["config"]["displayNameFromDS"] == "shop"
    times, values = first["data"]["values"]
    assert values == [1.0, None, 1.0] and first["data"]["entities"] == [None, {"NaN": [1]}]
    assert times[1] - times[0] == first["schema"]["fields"][0]["config"]["interval"]
    range_query = next(q for p, q in prometheus.queries if p == "/api/v1/query_range")
    assert range_query["query"] == "max(pg_up) by (database)" and int(range_query["step"]) >= 36
    assert body["results"]["B"]["frames"][0]["data"]["values"][1] == [1.0]

    status, body = call(
        port,
        "/api/ds/query",
        body={"queries": [{"refId": "A", "datasource": {"uid": "prom"}, "expr": "syntax error"}]},
    )
    assert status == 400 and "parse error" in body["results"]["A"]["error"]


def test_admin_password_is_applied_on_first_start_only_and_cli_resets_it(
    site, start, monkeypatch, capsys
):
    env = site["env"] | {"GF_SECURITY_ADMIN_PASSWORD": "first-pw"}
    app = start(env)
    assert call(app.port, "/api/user", auth=("admin", "first-pw"))[0] == 200
    app.stop()

    app = start(
        env | {"GF_SECURITY_ADMIN_PASSWORD": "second-pw"}
    )  # database exists: env is not applied
    assert call(app.port, "/api/user", auth=("admin", "second-pw"))[0] == 401
    assert call(app.port, "/api/user", auth=("admin", "first-pw"))[0] == 200

    # The CLI changes the stored password while the server runs, as with Grafana.
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sys, "stdin", io.StringIO("third-pw\n"))
    cli = ["grafana", "cli", "--homepath", "/usr/share/grafana", "admin", "reset-admin-password"]
    assert standin.main(cli + ["--password-from-stdin"]) == 0
    assert "Admin password changed successfully" in capsys.readouterr().out
    assert call(app.port, "/api/user", auth=("admin", "third-pw"))[0] == 200
    assert call(app.port, "/api/user", auth=("admin", "first-pw"))[0] == 401

    assert standin.main(cli + ["fourth-pw"]) == 0
    assert call(app.port, "/api/user", auth=("admin", "fourth-pw"))[0] == 200
    assert standin.main(cli + ["abc"]) == 1  # Grafana's policy: at least 4 characters
    assert "password policy" in capsys.readouterr().err


def test_unparsable_provisioning_stops_startup(site, start):
    (site["prov"] / "datasources" / "broken.yaml").write_text(
        "apiVersion: 1\ndatasources:\n  - name: [unclosed\n"
    )
    with pytest.raises(standin.StartupError, match="^Datasource provisioning error: .*broken.yaml"):
        start(site["env"])
    (site["prov"] / "datasources" / "broken.yaml").unlink()
    (site["prov"] / "dashboards" / "broken.yml").write_text("providers: [\n")
    with pytest.raises(standin.StartupError, match="^Dashboard provisioning error"):
        start(site["env"])


def test_requests_are_logged_without_credentials(site, start, capfd):
    port = start(site["env"] | {"GF_SECURITY_ADMIN_PASSWORD": "Sup3r-Secret"}).port
    assert call(port, "/api/search?query=x", auth=("admin", "Sup3r-Secret"))[0] == 200
    assert call(port, "/api/search", auth=("admin", "Wr0ng-Secret"))[0] == 401
    # The stand-in logs a request after answering it, in the request's thread: wait for both lines.
    err, deadline = "", time.monotonic() + 10
    while time.monotonic() < deadline and not (
        'msg="Request Completed" method=GET path=/api/search status=200' in err
        and "status=401" in err
    ):
        err += capfd.readouterr().err
        time.sleep(0.05)
    assert 'msg="Request Completed" method=GET path=/api/search status=200' in err
    assert "status=401" in err
    for secret in (
        "Sup3r-Secret",
        "Wr0ng-Secret",
        "Basic ",
        base64.b64encode(b"admin:Sup3r-Secret").decode(),
    ):
        assert secret not in err


# ---------------------------------------------------------------- run.sh, with the host's busybox sh


@pytest.mark.skipif(
    not shutil.which("busybox"), reason="busybox (the image's /bin/sh) is not installed"
)
def test_run_sh_reads_file_secrets_like_the_official_image(tmp_path):
    secret = tmp_path / "admin_password"
    secret.write_text("Pa$$ w:rd#@'\"\n")
    home = tmp_path / "home"
    shutil.copytree(GRAFANA_DIR, home)  # run.sh runs `grafana` from PATH, standin.py beside bin/
    (tmp_path / "grafana.ini").write_text("")
    port = free_port()
    env = {
        "PATH": f"{home / 'bin'}:{os.path.dirname(sys.executable)}:/usr/bin:/bin",
        "GF_PATHS_CONFIG": str(tmp_path / "grafana.ini"),
        "GF_PATHS_DATA": str(tmp_path / "data"),
        "GF_PATHS_HOME": str(home),
        "GF_PATHS_LOGS": str(tmp_path / "logs"),
        "GF_PATHS_PLUGINS": str(tmp_path / "plugins"),
        "GF_PATHS_PROVISIONING": str(tmp_path / "prov"),
        "GF_SERVER_HTTP_ADDR": "127.0.0.1",
        "GF_SERVER_HTTP_PORT": str(port),
        "GF_SECURITY_ADMIN_PASSWORD__FILE": str(secret),
    }
    (tmp_path / "data").mkdir()

    both = subprocess.run(
        ["busybox", "sh", str(home / "run.sh")],
        env=env | {"GF_SECURITY_ADMIN_PASSWORD": "x"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert both.returncode == 1 and "are exclusive" in both.stderr

    proc = subprocess.Popen(
        ["busybox", "sh", str(home / "run.sh")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def healthy():
            assert proc.poll() is None, proc.stdout.read()
            try:
                return call(port, "/api/health", auth=None)[0] == 200
            except OSError:
                return False

        wait_until(healthy, timeout=20)
        assert (tmp_path / "plugins").is_dir()  # run.sh creates it, as the official one does
        assert (
            call(port, "/api/user", auth=("admin", "Pa$$ w:rd#@'\""))[0] == 200
        )  # trailing newline dropped
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=10)[0]
    assert proc.returncode == 0
    assert f"Getting secret GF_SECURITY_ADMIN_PASSWORD from {secret}" in out
    assert "Pa$$" not in out


# ---------------------------------------------------------------- HTTPS (GF_SERVER_PROTOCOL=https)


def self_signed(directory, name="grafana"):
    """A certificate for 127.0.0.1 and its key, with openssl as an admin would make them."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=standin",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def https_env(site, cert, key):
    return site["env"] | {
        "GF_SERVER_PROTOCOL": "https",
        "GF_SERVER_CERT_FILE": str(cert),
        "GF_SERVER_CERT_KEY": str(key),
    }


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_https_serves_the_api_with_the_configured_certificate_only(site, start, tmp_path):
    cert, key = self_signed(tmp_path)
    port = start(https_env(site, cert, key)).port
    trusted = ssl.create_default_context(cafile=str(cert))
    with urllib.request.urlopen(
        f"https://127.0.0.1:{port}/api/health", context=trusted, timeout=10
    ) as response:
        assert json.load(response)["database"] == "ok"
    # A client that trusts something else refuses the connection, as it would refuse Grafana's.
    other, _ = self_signed(tmp_path, "other")
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(
            f"https://127.0.0.1:{port}/api/health",
            context=ssl.create_default_context(cafile=str(other)),
            timeout=10,
        )
    # TLS 1.2 at least, as Grafana's default min_tls_version.
    old = ssl.create_default_context(cafile=str(cert))
    old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises((urllib.error.URLError, ssl.SSLError, OSError)):
        urllib.request.urlopen(f"https://127.0.0.1:{port}/api/health", context=old, timeout=10)


def test_plain_http_on_the_https_port_gets_gos_answer(site, start, tmp_path):
    port = start(https_env(site, *self_signed(tmp_path))).port
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b"".join(iter(lambda: s.recv(4096), b""))
    assert (
        answer
        == b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
    )


def test_https_without_a_usable_key_pair_stops_startup(site, start, tmp_path):
    cert, key = self_signed(tmp_path)
    other_cert, _ = self_signed(tmp_path, "other")
    cases = [
        ({"GF_SERVER_CERT_FILE": ""}, "cert_file cannot be empty when using HTTPS"),
        ({"GF_SERVER_CERT_KEY": ""}, "cert_key cannot be empty when using HTTPS"),
        ({"GF_SERVER_CERT_FILE": str(tmp_path / "none.crt")}, "cannot find SSL cert_file at"),
        ({"GF_SERVER_CERT_KEY": str(tmp_path / "none.key")}, "cannot find SSL key_file at"),
        (
            {"GF_SERVER_CERT_FILE": str(other_cert)},
            "could not load SSL certificate",
        ),  # not the key's certificate
    ]
    for change, message in cases:
        with pytest.raises(standin.StartupError, match=message):
            start(https_env(site, cert, key) | change)
