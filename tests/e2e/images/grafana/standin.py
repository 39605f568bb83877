#!/usr/bin/env python3
"""Stand-in for Grafana 12.2.1 (the grafana/grafana:12.2.1 image) in pgmon's offline tests.

THIS IS NOT GRAFANA. No container registry, and no package of Grafana, can be reached
where pgmon's tests run, so this stdlib-only server imitates the parts of Grafana that
pgmon uses. It was written against Grafana's own source and documentation and aims to
answer as Grafana does (status codes, bodies, first-start-only admin password, the
provisioning file formats and rescans, the import API and its ``${NAME}`` substitution),
but everything else is missing: no UI, no users besides the admin, no alerting, no
plugins, no sessions or API keys. A passing offline test run says nothing about real
Grafana; tests/e2e/images/README.md lists what differs.

What it does:
* settings like Grafana: defaults < ``cfg:default.*`` arguments < grafana.ini
  (``--config``) < ``GF_<SECTION>_<KEY>`` environment < ``cfg:*`` arguments. The
  ``GF_*__FILE`` convention lives in run.sh, as in the official image.
* state in ``$GF_PATHS_DATA/grafana.db`` (JSON, not SQLite). The admin user is
  created with GF_SECURITY_ADMIN_PASSWORD only when that file is first created;
  ``grafana cli admin reset-admin-password`` changes it later, as with Grafana.
* provisioning at start from ``<provisioning>/datasources`` and ``dashboards``
  (``*.yaml``/``*.yml``, apiVersion 1, env interpolation); dashboard folders are
  re-scanned every ``updateIntervalSeconds`` (default 10).
* ``server.protocol = https`` (GF_SERVER_PROTOCOL) with ``cert_file``/``cert_key``
  (GF_SERVER_CERT_FILE, GF_SERVER_CERT_KEY): TLS 1.2 or later, Grafana's start-up errors
  for a missing or unreadable pair, and Go's answer to plain HTTP on the TLS port.
* HTTP API with Basic auth: /api/health, /api/user, /api/datasources[...],
  /api/datasources/uid/{uid}/health, /api/search, /api/folders,
  /api/dashboards/uid/{uid} (GET, DELETE), /api/dashboards/db, /api/dashboards/import,
  /api/ds/query (Prometheus data sources only; the data comes from the real Prometheus).
"""

import base64
import configparser
import contextlib
import copy
import datetime
import fcntl
import glob
import hashlib
import hmac
import http.server
import json
import math
import os
import re
import secrets
import signal
import socket
import ssl
import string
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

try:
    import yaml
except ImportError:  # the image ships Debian's python3-yaml there; a bare host may too
    sys.path.append("/usr/lib/python3/dist-packages")
    import yaml

VERSION = "12.2.1"
COMMIT = "standin"
ORG_ID = 1
ADMIN_USER_ID = 1  # the CLI resets user 1, as Grafana's does

# Settings this stand-in understands, with Grafana's defaults (relative paths are
# relative to the home path, as in Grafana's defaults.ini).
DEFAULTS = {
    "paths.data": "data",
    "paths.logs": "data/log",
    "paths.plugins": "data/plugins",
    "paths.provisioning": "conf/provisioning",
    "server.http_addr": "",
    "server.http_port": "3000",
    "server.protocol": "http",
    "server.cert_file": "",
    "server.cert_key": "",
    "server.min_tls_version": "TLS1.2",
    "security.admin_user": "admin",
    "security.admin_password": "admin",
    "security.admin_email": "admin@localhost",
}
PATH_KEYS = ("paths.data", "paths.logs", "paths.plugins", "paths.provisioning")


class StartupError(Exception):
    """Grafana would stop starting: printed, exit code 1."""


class DashErr(Exception):
    """A dashboard save refused the way Grafana refuses it: HTTP status and JSON body."""

    def __init__(self, status, body):
        super().__init__(body.get("message", ""))
        self.status, self.body = status, body


def log(logger, msg, level="info", **fields):
    """One logfmt line on stderr, like Grafana's console logger. Never pass secrets here."""
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")
    parts = [f"logger={logger}", f"t={now}", f"level={level}", f'msg="{msg}"']
    for k, v in fields.items():
        v = str(v)
        parts.append(f"{k}={json.dumps(v) if (' ' in v or '=' in v or not v) else v}")
    print(" ".join(parts), file=sys.stderr, flush=True)


# ---------------------------------------------------------------- settings


def load_settings(args=(), env=None, config=None, homepath=None):
    """Resolve settings with Grafana's precedence (see module docstring)."""
    env = os.environ if env is None else env
    homepath = homepath or os.getcwd()
    settings, late = dict(DEFAULTS), {}
    for arg in args:
        if arg.startswith("cfg:") and "=" in arg:
            key, value = arg[4:].split("=", 1)
            if key.startswith("default."):
                settings[key[8:]] = value
            else:
                late[key] = value
    if config:
        if not os.path.isfile(config):
            raise StartupError(
                f"Failed to start grafana. error: could not find config file: {config}"
            )
        ini = configparser.ConfigParser(
            interpolation=None, strict=False, inline_comment_prefixes=(";", "#")
        )
        try:
            with open(
                config, encoding="utf-8"
            ) as f:  # keys before any [section] are legal in grafana.ini
                ini.read_string("[__top__]\n" + f.read())
        except (OSError, configparser.Error) as e:
            raise StartupError(
                f"Failed to start grafana. error: failed to parse {config}: {e}"
            ) from e
        for key in DEFAULTS:
            section, name = key.split(".")
            if ini.has_option(section, name):
                settings[key] = ini.get(section, name)
    for key in DEFAULTS:
        name = "GF_" + key.replace(".", "_").upper()
        if name in env:
            settings[key] = env[name]
    settings.update(late)
    for key in PATH_KEYS:
        settings[key] = os.path.join(homepath, settings[key])
    return settings


# ---------------------------------------------------------------- state file


def encode_password(password, salt):
    # Grafana: PBKDF2-HMAC-SHA256, 10000 rounds, 50 bytes, hex.
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), 10000, 50).hex()


def new_uid(n=14):
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(n))


def now_iso():
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Store:
    """grafana.db as one JSON document; every change is locked read-modify-replace, so the
    server and `grafana cli` (another process, as with SQLite) can both write it."""

    def __init__(self, data_dir):
        self.path = os.path.join(data_dir, "grafana.db")
        self._mutex = threading.RLock()

    def exists(self):
        return os.path.exists(self.path)

    def create(self, admin_login, admin_password, admin_email):
        salt = new_uid(10)
        db = {
            "schema": 1,
            "next_id": {"user": 2, "datasource": 1, "dashboard": 1, "folder": 1},
            "users": [
                {
                    "id": ADMIN_USER_ID,
                    "login": admin_login,
                    "email": admin_email,
                    "name": "",
                    "salt": salt,
                    "password": encode_password(admin_password, salt),
                    "isAdmin": True,
                    "created": now_iso(),
                }
            ],
            "datasources": [],
            "folders": [],
            "dashboards": [],
        }
        self._write(db)

    @contextlib.contextmanager
    def tx(self, write=False):
        with self._mutex, open(self.path + ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            with open(self.path, encoding="utf-8") as f:
                db = json.load(f)
            yield db
            if write:
                self._write(db)

    def _write(self, db):
        tmp = f"{self.path}.tmp{os.getpid()}"
        # 0640 like Grafana's grafana.db: the admin's password hash is in there.
        with open(
            os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640), "w", encoding="utf-8"
        ) as f:
            json.dump(db, f)
        os.replace(tmp, self.path)


def next_id(db, kind):
    value = db["next_id"][kind]
    db["next_id"][kind] = value + 1
    return value


# ---------------------------------------------------------------- provisioning files

_EXPAND = re.compile(r"\$__(env|file)\{([^}]*)\}|\$\$|\$\{([^}]*)\}|\$([A-Za-z0-9_]+)")


def interpolate(value, env):
    """Grafana expands $VAR, ${VAR}, $__env{VAR} and $__file{path} in provisioning values;
    $$ is a literal $."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def repl(m):
        if m.group(1) == "file":
            with open(m.group(2), encoding="utf-8") as f:
                return f.read().strip()
        if m.group(1) == "env":
            return env.get(m.group(2), "")
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(3) if m.group(3) is not None else m.group(4), "")

    return _EXPAND.sub(repl, value)


def read_config_dir(directory, env):
    """Parsed *.yaml/*.yml of one provisioning folder; a file that cannot be read or
    parsed is an error, as in Grafana (a missing folder is not)."""
    files = sorted(
        glob.glob(os.path.join(directory, "*.yaml")) + glob.glob(os.path.join(directory, "*.yml"))
    )
    for path in files:
        try:
            with open(path, encoding="utf-8") as f:
                doc = yaml.safe_load(f)
            if doc is None:
                continue
            if not isinstance(doc, dict):
                raise ValueError("the file does not hold a mapping")
            yield path, interpolate(doc, env)
        except (OSError, ValueError, yaml.YAMLError) as e:
            raise StartupError(
                f"could not parse provisioning config file: {path} error: {e}"
            ) from e


def slugify(title):
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


class Provider:
    def __init__(self, cfg, source):
        opts = cfg.get("options") or {}
        self.name = str(cfg.get("name") or "")
        self.folder = str(cfg.get("folder") or "")
        self.folder_uid = str(cfg.get("folderUid") or "")
        self.type = str(cfg.get("type") or "file")
        self.disable_deletion = bool(cfg.get("disableDeletion", False))
        self.allow_ui_updates = bool(cfg.get("allowUiUpdates", False))
        self.interval = int(cfg.get("updateIntervalSeconds") or 10)
        self.path = str(opts.get("path") or "")
        self.from_files = bool(opts.get("foldersFromFilesStructure", False))
        if self.type != "file":
            raise StartupError(f"{source}: dashboard provider type {self.type!r} is not supported")
        if not self.path:
            raise StartupError(f"{source}: dashboard provider {self.name!r} has no options.path")
        if self.from_files and (self.folder or self.folder_uid):
            raise StartupError(
                f"{source}: 'folder' and 'folderUID' should be empty using 'foldersFromFilesStructure' option"
            )
        self.next_scan = 0.0
        self.failed = {}  # relative path -> checksum of a file that could not be loaded


# ---------------------------------------------------------------- dashboards


def save_dashboard(db, model, folder_uid, overwrite, provisioned=None):
    """Grafana's save rules: uid/id lookup, version check, same-name-in-folder check."""
    model = copy.deepcopy(model)
    title = str(model.get("title") or "").strip()
    if not title:
        raise DashErr(400, {"message": "Dashboard title cannot be empty"})
    uid = str(model.get("uid") or "")
    if len(uid) > 40:
        raise DashErr(400, {"message": "uid too long, max 40 characters"})
    dash_id = model.get("id") or 0
    version = model.get("version") or 0
    existing = None
    if dash_id:
        existing = next((d for d in db["dashboards"] if d["id"] == dash_id), None)
        if existing is None:
            raise DashErr(404, {"message": "Dashboard not found"})
        uid = uid or existing["uid"]
    by_uid = next((d for d in db["dashboards"] if uid and d["uid"] == uid), None)
    if existing and by_uid and existing is not by_uid:
        raise DashErr(400, {"message": "A dashboard with the same uid already exists"})
    existing = existing or by_uid
    if existing and existing["version"] != version and not overwrite:
        raise DashErr(
            412,
            {
                "status": "version-mismatch",
                "message": "The dashboard has been changed by someone else",
            },
        )
    slug = slugify(title)
    same_name = next(
        (
            d
            for d in db["dashboards"]
            if d["slug"] == slug and d["folderUid"] == folder_uid and d is not existing
        ),
        None,
    )
    if same_name:
        if not overwrite:
            raise DashErr(
                412,
                {
                    "status": "name-exists",
                    "message": "A dashboard with the same name in the folder already exists",
                },
            )
        existing = same_name  # overwrite takes over the other dashboard, uid and all
    if existing:
        rec = existing
        rec["version"] += 1
    else:
        rec = {
            "id": next_id(db, "dashboard"),
            "uid": uid or new_uid(),
            "version": 1,
            "created": now_iso(),
        }
        db["dashboards"].append(rec)
    tags = model.get("tags") if isinstance(model.get("tags"), list) else []
    rec.update(title=title, slug=slug, folderUid=folder_uid, updated=now_iso(), tags=tags)
    if provisioned is not None:
        rec["provisioned"] = provisioned
    model.update(id=rec["id"], uid=rec["uid"], version=rec["version"], title=title)
    rec["data"] = model
    return rec


_VAR = re.compile(r"\$\{.+?\}")


def evaluate_import(template, inputs):
    """Grafana's DashTemplateEvaluator: every __inputs entry needs an input of the same
    type and name (or name "*"); ${NAME} in every string becomes its value."""
    variables = {}
    for definition in template.get("__inputs") or []:
        name, kind = definition.get("name", ""), definition.get("type", "")
        match = next(
            (i for i in inputs if i.get("type") == kind and i.get("name") in (name, "*")), None
        )
        if definition.get("pluginId") == "__expr__":
            match = {"value": "__expr__"}
        if match is None:
            raise DashErr(
                400,
                {"message": f"dashboard import failed: missing dashboard input variable {name}"},
            )
        variables["${" + name + "}"] = str(match.get("value", ""))

    def walk(value):
        if isinstance(value, str):
            return _VAR.sub(lambda m: variables.get(m.group(0), m.group(0)), value)
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items() if k != "__inputs"}
        return value

    result = walk(template)
    for key in ("__elements", "__requires"):
        result.pop(key, None)
    return result


# ---------------------------------------------------------------- Prometheus data sources


class DownstreamError(Exception):
    def __init__(self, message, status=500):
        super().__init__(message)
        self.status = status


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never an env proxy


def prometheus_call(ds, path, params, timeout=30):
    json_data = ds.get("jsonData") or {}
    secure = ds.get("secureJsonData") or {}
    url = ds.get("url", "").rstrip("/") + path
    body = urllib.parse.urlencode(params)
    headers = {"Accept": "application/json", "User-Agent": f"Grafana/{VERSION}"}
    if ds.get("basicAuth"):
        token = f"{ds.get('basicAuthUser', '')}:{secure.get('basicAuthPassword', '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(token.encode()).decode()
    n = 1
    while f"httpHeaderName{n}" in json_data:
        headers[json_data[f"httpHeaderName{n}"]] = secure.get(f"httpHeaderValue{n}", "")
        n += 1
    if str(json_data.get("httpMethod") or "POST").upper() == "GET":
        request = urllib.request.Request(f"{url}?{body}", headers=headers)
    else:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        request = urllib.request.Request(url, data=body.encode(), headers=headers, method="POST")
    try:
        with _NO_PROXY.open(request, timeout=timeout) as response:
            payload = json.load(response)
    except urllib.error.HTTPError as e:
        try:
            payload = json.load(e)
        except ValueError:
            raise DownstreamError(f"{e.code} {e.reason}", e.code) from e
    except (OSError, ValueError) as e:
        raise DownstreamError(f"{request.get_method()} {url}: {e}") from e
    if payload.get("status") != "success":
        raise DownstreamError(
            f"{payload.get('errorType', 'error')}: {payload.get('error', '')}", 400
        )
    return payload["data"]


_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def parse_duration(text):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)", str(text).strip())
    if not m:
        raise ValueError(f"invalid duration {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_time(value, now):
    """Grafana's time range values: epoch milliseconds, "now" or "now-<duration>"."""
    text = str(value).strip()
    if re.fullmatch(r"\d+", text):
        return int(text) / 1000.0
    m = re.fullmatch(r"now(?:-(.+))?", text)
    if not m:
        raise ValueError(f"invalid time {text!r}")
    return now - (parse_duration(m.group(1)) if m.group(1) else 0)


def fmt_seconds(seconds):
    return f"{int(seconds)}s" if seconds >= 1 else f"{int(seconds * 1000)}ms"


def run_prometheus_query(ds, query, start, end):
    """One /api/ds/query query against Prometheus, as data frames (one per series).
    Simplified step rules: max(min interval, range/maxDataPoints, range/11000)."""
    ref = query.get("refId") or "A"
    expr = str(query.get("expr") or "")
    min_step = parse_duration(
        query.get("interval") or (ds.get("jsonData") or {}).get("timeInterval") or "15s"
    )
    rng = max(end - start, 0.001)
    step = max(min_step, rng / int(query.get("maxDataPoints") or 100), rng / 11000, 1.0)
    step = float(math.ceil(step))
    rate_interval = max(step + min_step, 4 * min_step)
    for name, val in (
        ("$__rate_interval", fmt_seconds(rate_interval)),
        ("$__interval_ms", str(int(step * 1000))),
        ("$__interval", fmt_seconds(step)),
        ("$__range_ms", str(int(rng * 1000))),
        ("$__range_s", str(int(rng))),
        ("$__range", fmt_seconds(rng)),
    ):
        expr = expr.replace(name, val)
    legend = query.get("legendFormat") or ""
    if not expr:
        return []
    instant = bool(query.get("instant"))
    frames = []
    if instant:
        data = prometheus_call(ds, "/api/v1/query", {"query": expr, "time": f"{end:.3f}"})
        frames += to_frames(ref, data, expr, None, legend)
    if query.get("range", not instant):
        start_a, end_a = math.floor(start / step) * step, math.floor(end / step) * step
        data = prometheus_call(
            ds,
            "/api/v1/query_range",
            {
                "query": expr,
                "start": f"{start_a:.3f}",
                "end": f"{end_a:.3f}",
                "step": str(int(step)),
            },
        )
        frames += to_frames(ref, data, expr, step, legend)
    return frames


def to_frames(ref, data, expr, step, legend):
    kind = data.get("resultType")
    if kind == "scalar":
        series = [{"metric": {}, "values": [data["result"]]}]
    elif kind == "vector":
        series = [{"metric": r["metric"], "values": [r["value"]]} for r in data["result"]]
    elif kind == "matrix":
        series = data["result"]
    else:
        return []
    frames = []
    for s in series:
        labels = dict(s.get("metric") or {})
        times, values, entities = [], [], {}
        for i, (t, v) in enumerate(s.get("values") or []):
            times.append(int(round(float(t) * 1000)))
            number = float(v)
            if math.isfinite(number):
                values.append(number)
            else:  # JSON has no NaN/Inf: Grafana sends null and lists the index in "entities"
                values.append(None)
                entities.setdefault(
                    "NaN" if math.isnan(number) else ("Inf" if number > 0 else "NegInf"), []
                ).append(i)
        value_field = {
            "name": "Value",
            "type": "number",
            "typeInfo": {"frame": "float64"},
            "labels": labels,
            "config": {},
        }
        if legend:
            value_field["config"]["displayNameFromDS"] = re.sub(
                r"\{\{\s*(.+?)\s*\}\}", lambda m, labels=labels: labels.get(m.group(1), ""), legend
            )
        time_field = {
            "name": "Time",
            "type": "time",
            "typeInfo": {"frame": "time.Time"},
            "config": {},
        }
        if step:
            time_field["config"]["interval"] = int(step * 1000)
        meta = {
            "type": "numeric-multi" if step is None else "timeseries-multi",
            "typeVersion": [0, 1],
            "custom": {"resultType": kind},
            "executedQueryString": f"Expr: {expr}"
            + (f"\nStep: {fmt_seconds(step)}" if step else ""),
        }
        data_part = {"values": [times, values]}
        if entities:
            data_part["entities"] = [None, entities]
        frames.append(
            {
                "schema": {"refId": ref, "meta": meta, "fields": [time_field, value_field]},
                "data": data_part,
            }
        )
    return frames


# ---------------------------------------------------------------- the server


class Grafana:
    def __init__(self, settings, env=None):
        self.settings = settings
        self.env = dict(os.environ if env is None else env)
        self.store = Store(settings["paths.data"])
        self.providers = []
        self.httpd = None
        self._stop = threading.Event()
        self._threads = []

    # -- startup, in Grafana's order: database, provisioning, HTTP
    def start(self):
        s = self.settings
        log("settings", "Starting Grafana", version=VERSION, commit=COMMIT, branch="HEAD")
        log("settings", "Path Data", path=s["paths.data"])
        log("settings", "Path Provisioning", path=s["paths.provisioning"])
        try:
            os.makedirs(s["paths.data"], exist_ok=True)
            if not self.store.exists():
                self.store.create(
                    s["security.admin_user"],
                    s["security.admin_password"],
                    s["security.admin_email"],
                )
                log("sqlstore", "Created default admin", user=s["security.admin_user"])
            with self.store.tx(write=True):  # proves the file is readable and writable
                pass
        except (OSError, ValueError) as e:
            raise StartupError(
                f"Failed to start grafana. error: failed to open database {self.store.path}: {e}"
            ) from e
        self.provision_datasources()
        self.load_dashboard_providers()
        for p in self.providers:
            self.scan_provider(p)
        addr = s["server.http_addr"] or "0.0.0.0"
        protocol = s["server.protocol"]
        if protocol not in ("http", "https"):
            raise StartupError(
                f"Failed to start grafana. error: the Grafana stand-in serves protocol http or "
                f"https, not {protocol!r}"
            )
        tls = tls_context(s) if protocol == "https" else None
        try:
            self.httpd = (TLSServer if tls else http.server.ThreadingHTTPServer)(
                (addr, int(s["server.http_port"])), make_handler(self)
            )
        except OSError as e:
            raise StartupError(
                f"Failed to start grafana. error: listen tcp {addr}:{s['server.http_port']}: {e}"
            ) from e
        self.httpd.daemon_threads = True
        if tls:
            self.httpd.tls = tls
            log(
                "http.server", "HTTP Server TLS settings", MinTLSVersion=s["server.min_tls_version"]
            )
        log("http.server", "HTTP Server Listen", address=f"{addr}:{self.port}", protocol=protocol)
        serve = lambda: self.httpd.serve_forever(poll_interval=0.1)  # noqa: E731 (quick stop())
        for target in (serve, self._rescan_loop):
            t = threading.Thread(target=target, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    @property
    def port(self):
        return self.httpd.server_address[1]

    def stop(self):
        self._stop.set()
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()
        for t in self._threads:
            t.join(timeout=5)

    # -- provisioning
    def provision_datasources(self):
        directory = os.path.join(self.settings["paths.provisioning"], "datasources")
        try:
            configs = list(read_config_dir(directory, self.env))
            wanted, deletes, prune = [], [], False
            for path, doc in configs:
                deletes += [d for d in doc.get("deleteDatasources") or [] if isinstance(d, dict)]
                prune = prune or bool(doc.get("prune"))
                for ds in doc.get("datasources") or []:
                    if not isinstance(ds, dict) or not ds.get("name"):
                        raise StartupError(f"{path}: data source name missing")
                    wanted.append(ds)
            if sum(1 for ds in wanted if ds.get("isDefault")) > 1:
                raise StartupError(
                    "datasource.yaml config is invalid. Only one datasource per organization can be marked as default"
                )
            with self.store.tx(write=True) as db:
                for d in deletes:
                    db["datasources"] = [x for x in db["datasources"] if x["name"] != d.get("name")]
                names = {ds["name"] for ds in wanted}
                if prune:
                    db["datasources"] = [
                        x
                        for x in db["datasources"]
                        if not x.get("provisioned") or x["name"] in names
                    ]
                for ds in wanted:
                    self._upsert_datasource(db, ds)
        except StartupError as e:
            raise StartupError(f"Datasource provisioning error: {e}") from e
        log(
            "provisioning.datasources",
            "inserting/updating datasources from configuration",
            count=len(wanted),
        )

    @staticmethod
    def _upsert_datasource(db, cfg):
        existing = next((x for x in db["datasources"] if x["name"] == cfg["name"]), None)
        uid = str(cfg.get("uid") or (existing or {}).get("uid") or new_uid())
        clash = next((x for x in db["datasources"] if x["uid"] == uid and x is not existing), None)
        if clash:
            raise StartupError(f"data source with uid {uid} already exists ({clash['name']})")
        if existing is None:
            existing = {"id": next_id(db, "datasource"), "version": 0}
            db["datasources"].append(existing)
        existing.update(
            uid=uid,
            orgId=ORG_ID,
            name=cfg["name"],
            type=str(cfg.get("type") or ""),
            access=str(cfg.get("access") or "proxy"),
            url=str(cfg.get("url") or ""),
            user=str(cfg.get("user") or ""),
            database=str(cfg.get("database") or ""),
            basicAuth=bool(cfg.get("basicAuth", False)),
            basicAuthUser=str(cfg.get("basicAuthUser") or ""),
            withCredentials=bool(cfg.get("withCredentials", False)),
            isDefault=bool(cfg.get("isDefault", False)),
            jsonData=cfg.get("jsonData") or {},
            secureJsonData=cfg.get("secureJsonData") or {},
            readOnly=not bool(cfg.get("editable", False)),
            provisioned=True,
            version=existing["version"] + 1,
        )
        if existing["isDefault"]:  # one default per organization
            for other in db["datasources"]:
                if other is not existing:
                    other["isDefault"] = False

    def load_dashboard_providers(self):
        directory = os.path.join(self.settings["paths.provisioning"], "dashboards")
        try:
            for path, doc in read_config_dir(directory, self.env):
                for cfg in doc.get("providers") or []:
                    self.providers.append(Provider(cfg, path))
        except StartupError as e:
            raise StartupError(f"Dashboard provisioning error: {e}") from e

    def _rescan_loop(self):
        while not self._stop.wait(0.2):
            for p in self.providers:
                if time.monotonic() >= p.next_scan:
                    try:
                        self.scan_provider(p)
                    except Exception as e:  # a bad scan must not kill the poller
                        log(
                            "provisioning.dashboard",
                            "scan failed",
                            level="error",
                            name=p.name,
                            error=e,
                        )

    def scan_provider(self, p):
        p.next_scan = time.monotonic() + p.interval
        root = os.path.realpath(p.path)
        if not os.path.isdir(root):
            log(
                "provisioning.dashboard",
                "Cannot read directory",
                level="error",
                name=p.name,
                path=p.path,
            )
            return
        found = {}
        for dirpath, dirnames, files in os.walk(root, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(files):
                if name.endswith(".json"):
                    full = os.path.join(dirpath, name)
                    found[os.path.relpath(full, root)] = full
        with self.store.tx(write=True) as db:
            records = {
                d["provisioned"]["path"]: d
                for d in db["dashboards"]
                if (d.get("provisioned") or {}).get("provider") == p.name
            }
            for rel, full in found.items():
                try:
                    with open(full, "rb") as f:
                        raw = f.read()
                except OSError as e:
                    log(
                        "provisioning.dashboard",
                        "failed to read dashboard file",
                        level="error",
                        file=full,
                        error=e,
                    )
                    continue
                checksum = hashlib.md5(raw).hexdigest()
                rec = records.get(rel)
                if (rec and rec["provisioned"]["checksum"] == checksum) or p.failed.get(
                    rel
                ) == checksum:
                    continue  # unchanged (a broken file is reported once per change, not per scan)
                try:
                    model = json.loads(raw)
                    if not isinstance(model, dict):
                        raise ValueError("not a JSON object")
                    model.pop("id", None)
                    model.pop("version", None)
                    if not model.get("uid") and rec:
                        model["uid"] = rec["uid"]
                    folder_uid = self._provider_folder(db, p, rel)
                    save_dashboard(
                        db,
                        model,
                        folder_uid,
                        overwrite=True,
                        provisioned={
                            "provider": p.name,
                            "path": rel,
                            "checksum": checksum,
                            "allowUiUpdates": p.allow_ui_updates,
                        },
                    )
                    log(
                        "provisioning.dashboard",
                        "saved provisioned dashboard",
                        name=p.name,
                        file=rel,
                    )
                except (ValueError, DashErr) as e:
                    p.failed[rel] = checksum
                    log(
                        "provisioning.dashboard",
                        "failed to load dashboard from",
                        level="error",
                        file=full,
                        error=e,
                    )
            if not p.disable_deletion:
                gone = {id(rec) for rel, rec in records.items() if rel not in found}
                if gone:
                    db["dashboards"] = [d for d in db["dashboards"] if id(d) not in gone]
                    log(
                        "provisioning.dashboard",
                        "deleted dashboards whose file is gone",
                        name=p.name,
                        count=len(gone),
                    )

    @staticmethod
    def _provider_folder(db, p, rel):
        title, uid = p.folder, p.folder_uid
        if p.from_files:
            parent = os.path.dirname(rel)
            title, uid = (os.path.basename(parent), "") if parent else ("", "")
        if not title:
            return ""
        folder = next(
            (
                f
                for f in db["folders"]
                if (uid and f["uid"] == uid) or (not uid and f["title"] == title)
            ),
            None,
        )
        if folder is None:
            folder = {
                "id": next_id(db, "folder"),
                "uid": uid or new_uid(),
                "title": title,
                "version": 1,
                "created": now_iso(),
                "updated": now_iso(),
            }
            db["folders"].append(folder)
        return folder["uid"]

    # -- authentication
    def authenticate(self, header):
        """(user, None) or (None, 401 body), with Grafana's messages."""
        if not header:
            return None, {
                "message": "Unauthorized",
                "messageId": "auth.unauthorized",
                "statusCode": 401,
                "traceID": "",
            }
        failed = {
            "message": "Invalid username or password",
            "messageId": "password-auth.failed",
            "statusCode": 401,
            "traceID": "",
        }
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() != "basic":
            return None, {
                "message": "Invalid API key",
                "messageId": "api-key.invalid",
                "statusCode": 401,
                "traceID": "",
            }
        try:
            login, sep, password = (
                base64.b64decode(credentials.strip(), validate=True).decode().partition(":")
            )
        except (ValueError, UnicodeDecodeError):
            return None, failed
        if not sep or not password:
            return None, failed
        with self.store.tx() as db:  # read each time: `grafana cli` may have changed it
            user = next((u for u in db["users"] if login in (u["login"], u["email"])), None)
        if user is None or not hmac.compare_digest(
            user["password"], encode_password(password, user["salt"])
        ):
            return None, failed
        return user, None


# ---------------------------------------------------------------- TLS

TLS_VERSIONS = {"TLS1.2": ssl.TLSVersion.TLSv1_2, "TLS1.3": ssl.TLSVersion.TLSv1_3}
GRAFANA_CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "ECDHE-RSA-AES128-SHA",
        "ECDHE-ECDSA-AES256-SHA",
        "ECDHE-RSA-AES256-SHA",
        "AES128-GCM-SHA256",
        "AES256-GCM-SHA384",
        "AES128-SHA",
        "AES256-SHA",
    ]
)


def tls_context(s):
    """Grafana's configureTLS: both files named and present, then the pair loaded (a key that does not match
    its certificate, or a file it may not read, stops start-up); TLS 1.2 or later by default."""
    cert, key = s["server.cert_file"], s["server.cert_key"]
    if not cert:
        raise StartupError(
            "Failed to start grafana. error: cert_file cannot be empty when using HTTPS"
        )
    if not key:
        raise StartupError(
            "Failed to start grafana. error: cert_key cannot be empty when using HTTPS"
        )
    if not os.path.exists(cert):
        raise StartupError(f'Failed to start grafana. error: cannot find SSL cert_file at "{cert}"')
    if not os.path.exists(key):
        raise StartupError(f'Failed to start grafana. error: cannot find SSL key_file at "{key}"')
    if s["server.min_tls_version"] not in TLS_VERSIONS:
        raise StartupError(
            f"Failed to start grafana. error: unknown min_tls_version {s['server.min_tls_version']!r}"
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = TLS_VERSIONS[s["server.min_tls_version"]]
    # Grafana's TLS 1.2 cipher suites (pkg/api/http_server.go, getDefaultCiphers). Security level 0 lets a TLS 1.2
    # client that sends no signature_algorithms in (SHA-1 fallback, RFC 5246): this image's wget is Debian's static
    # busybox, whose own TLS is such a client; the official image's busybox wget goes through Alpine's ssl_client.
    context.set_ciphers(GRAFANA_CIPHERS + ":@SECLEVEL=0")
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as e:
        raise StartupError(
            f"Failed to start grafana. error: could not load SSL certificate: {e}"
        ) from e
    return context


class TLSServer(http.server.ThreadingHTTPServer):
    """HTTPS as Go's net/http serves it: the handshake in the connection's own thread (a slow client holds up
    nobody), and a plain HTTP request on the TLS port answered 400 in clear text."""

    tls = None

    def finish_request(self, request, client_address):
        request.settimeout(10)
        try:
            first = request.recv(1, socket.MSG_PEEK)
            if first and first != b"\x16":  # not a TLS handshake record: someone speaks plain HTTP
                request.sendall(
                    b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
                )
                return
            connection = self.tls.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError) as e:
            log(
                "http.server",
                f"http: TLS handshake error from {client_address[0]}:{client_address[1]}: {e}",
                level="error",
            )
            return
        try:
            connection.settimeout(None)
            super().finish_request(connection, client_address)
        finally:
            with contextlib.suppress(OSError):
                connection.close()


# ---------------------------------------------------------------- HTTP handler


def ds_summary(ds):
    return {
        k: ds[k]
        for k in (
            "id",
            "uid",
            "orgId",
            "name",
            "type",
            "access",
            "url",
            "user",
            "database",
            "basicAuth",
            "isDefault",
            "jsonData",
            "readOnly",
        )
    } | {
        "typeName": ds["type"].capitalize(),
        "typeLogoUrl": f"public/app/plugins/datasource/{ds['type']}/img/{ds['type']}_logo.svg",
    }


def ds_detail(ds):
    detail = {
        k: ds[k]
        for k in (
            "id",
            "uid",
            "orgId",
            "name",
            "type",
            "access",
            "url",
            "user",
            "database",
            "basicAuth",
            "basicAuthUser",
            "withCredentials",
            "isDefault",
            "jsonData",
            "version",
            "readOnly",
        )
    }
    detail["typeLogoUrl"] = f"public/app/plugins/datasource/{ds['type']}/img/{ds['type']}_logo.svg"
    detail["secureJsonFields"] = {
        k: True for k in ds.get("secureJsonData") or {}
    }  # never the values
    detail["apiVersion"] = ""
    return detail


def make_handler(app):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "Grafana"
        sys_version = ""

        def log_message(self, *args):  # replaced by one line per request in _finish
            pass

        def _send(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)
            self._status = status

        def _dispatch(self, method):
            started, self._status = time.monotonic(), 0
            url = urllib.parse.urlsplit(self.path)
            user = None
            try:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                if url.path == "/api/health" and method == "GET":
                    return self._send(200, {"commit": COMMIT, "database": "ok", "version": VERSION})
                user, failure = app.authenticate(self.headers.get("Authorization"))
                if failure:
                    return self._send(401, failure)
                routed = route(app, method, url.path, urllib.parse.parse_qs(url.query), raw, user)
                self._send(*routed)
            except Exception as e:  # keep serving; Grafana answers 500 with a message
                log("context", "Internal error", level="error", path=url.path, error=repr(e))
                if not self._status:
                    self._send(500, {"message": "Internal Server Error"})
            finally:
                # One line per request; the path without its query string, never a header.
                log(
                    "context",
                    "Request Completed",
                    method=method,
                    path=url.path,
                    status=self._status,
                    remote_addr=self.client_address[0],
                    uname=(user or {}).get("login", ""),
                    time_ms=int((time.monotonic() - started) * 1000),
                )

        def do_GET(self):
            self._dispatch("GET")

        def do_POST(self):
            self._dispatch("POST")

        def do_PUT(self):
            self._dispatch("PUT")

        def do_DELETE(self):
            self._dispatch("DELETE")

    return Handler


def route(app, method, path, query, raw, user):
    """Returns (status, JSON body)."""

    def body():
        try:
            value = json.loads(raw or b"null")
        except ValueError:
            value = None
        if not isinstance(value, dict):
            raise DashErr(400, {"message": "bad request data"})
        return value

    parts = [p for p in path.split("/") if p]
    try:
        if method == "GET" and parts == ["api", "user"]:
            return 200, {
                "id": user["id"],
                "uid": "",
                "email": user["email"],
                "name": user["name"],
                "login": user["login"],
                "orgId": ORG_ID,
                "isGrafanaAdmin": user["isAdmin"],
            }
        if method == "GET" and parts == ["api", "datasources"]:
            with app.store.tx() as db:
                return 200, [ds_summary(ds) for ds in db["datasources"]]
        if (
            method == "GET"
            and parts[:2] == ["api", "datasources"]
            and len(parts) in (4, 5)
            and parts[2] in ("uid", "name")
        ):
            with app.store.tx() as db:
                key = "uid" if parts[2] == "uid" else "name"
                ds = next((d for d in db["datasources"] if d[key] == parts[3]), None)
            if ds is None:
                return 404, {"message": "Data source not found"}
            if len(parts) == 4:
                return 200, ds_detail(ds)
            if parts[4] == "health" and key == "uid":
                return datasource_health(ds)
        if method == "GET" and parts == ["api", "search"]:
            return 200, search(app, query)
        if method == "GET" and parts == ["api", "folders"]:
            with app.store.tx() as db:
                return 200, [
                    {"id": f["id"], "uid": f["uid"], "title": f["title"]} for f in db["folders"]
                ]
        if (
            parts[:3] == ["api", "dashboards", "uid"]
            and len(parts) == 4
            and method in ("GET", "DELETE")
        ):
            return dashboard_by_uid(app, method, parts[3])
        if method == "POST" and parts == ["api", "dashboards", "import"]:
            return import_dashboard(app, body())
        if method == "POST" and parts == ["api", "dashboards", "db"]:
            return save_dashboard_api(app, body())
        if method == "POST" and parts == ["api", "ds", "query"]:
            return ds_query(app, body())
    except DashErr as e:
        return e.status, e.body
    return 404, {"message": "Not found"}


def datasource_health(ds):
    if ds["type"] != "prometheus":
        return 400, {
            "status": "ERROR",
            "message": f"the Grafana stand-in has no health check for type {ds['type']}",
        }
    try:
        prometheus_call(
            ds, "/api/v1/query", {"query": "1+1", "time": f"{time.time():.3f}"}, timeout=10
        )
    except DownstreamError as e:
        return 400, {
            "status": "ERROR",
            "message": "There was an error returned querying the Prometheus API.",
            "details": {"verboseMessage": str(e)},
        }
    return 200, {"status": "OK", "message": "Successfully queried the Prometheus API."}


def _folder_fields(db, folder_uid):
    folder = next((f for f in db["folders"] if f["uid"] == folder_uid), None)
    if not folder:
        return {}
    return {
        "folderId": folder["id"],
        "folderUid": folder["uid"],
        "folderTitle": folder["title"],
        "folderUrl": f"/dashboards/f/{folder['uid']}/{slugify(folder['title'])}",
    }


def search(app, query):
    text = (query.get("query") or [""])[0].lower()
    kinds = query.get("type") or []
    tags, uids = query.get("tag") or [], query.get("dashboardUIDs") or []
    folder_uids = query.get("folderUIDs") or []
    limit = int((query.get("limit") or ["1000"])[0])
    hits = []
    with app.store.tx() as db:
        if not kinds or "dash-folder" in kinds:
            for f in db["folders"]:
                if text in f["title"].lower() and not tags and not uids:
                    hits.append(
                        {
                            "id": f["id"],
                            "uid": f["uid"],
                            "orgId": ORG_ID,
                            "title": f["title"],
                            "uri": f"db/{slugify(f['title'])}",
                            "url": f"/dashboards/f/{f['uid']}/{slugify(f['title'])}",
                            "slug": "",
                            "type": "dash-folder",
                            "tags": [],
                            "isStarred": False,
                            "sortMeta": 0,
                            "isDeleted": False,
                        }
                    )
        if not kinds or "dash-db" in kinds:
            for d in db["dashboards"]:
                if (
                    text in d["title"].lower()
                    and all(t in d["tags"] for t in tags)
                    and (not uids or d["uid"] in uids)
                    and (not folder_uids or d["folderUid"] in folder_uids)
                ):
                    hits.append(
                        {
                            "id": d["id"],
                            "uid": d["uid"],
                            "orgId": ORG_ID,
                            "title": d["title"],
                            "uri": f"db/{d['slug']}",
                            "url": f"/d/{d['uid']}/{d['slug']}",
                            "slug": "",
                            "type": "dash-db",
                            "tags": d["tags"],
                            "isStarred": False,
                            "sortMeta": 0,
                            "isDeleted": False,
                        }
                        | _folder_fields(db, d["folderUid"])
                    )
    hits.sort(key=lambda h: (h["type"] != "dash-folder", h["title"].lower()))
    return hits[:limit]


def dashboard_by_uid(app, method, uid):
    with app.store.tx(write=(method == "DELETE")) as db:
        d = next((x for x in db["dashboards"] if x["uid"] == uid), None)
        if d is None:
            return 404, {"message": "Dashboard not found"}
        prov = d.get("provisioned") or {}
        if method == "DELETE":
            if prov:
                return 400, {"message": "provisioned dashboard cannot be deleted"}
            db["dashboards"].remove(d)
            return 200, {
                "id": d["id"],
                "uid": uid,
                "title": d["title"],
                "message": f"Dashboard {d['title']} deleted",
            }
        folder = _folder_fields(db, d["folderUid"])
        meta = {
            "type": "db",
            "canSave": not prov or prov.get("allowUiUpdates", False),
            "canEdit": True,
            "canAdmin": True,
            "canStar": True,
            "canDelete": not prov,
            "slug": d["slug"],
            "url": f"/d/{uid}/{d['slug']}",
            "expires": "0001-01-01T00:00:00Z",
            "created": d["created"],
            "updated": d["updated"],
            "updatedBy": "admin",
            "createdBy": "admin",
            "version": d["version"],
            "hasAcl": False,
            "isFolder": False,
            "folderId": folder.get("folderId", 0),
            "folderUid": folder.get("folderUid", ""),
            "folderTitle": folder.get("folderTitle", "General"),
            "folderUrl": folder.get("folderUrl", ""),
            "provisioned": bool(prov),
            "provisionedExternalId": prov.get("path", ""),
        }
        return 200, {"dashboard": d["data"], "meta": meta}


def _check_folder(db, folder_uid):
    if folder_uid and not any(f["uid"] == folder_uid for f in db["folders"]):
        raise DashErr(400, {"message": "folder not found"})


def import_dashboard(app, req):
    template = req.get("dashboard")
    if not isinstance(template, dict):
        return 422, {"message": "Dashboard must be set"}
    inputs = [i for i in req.get("inputs") or [] if isinstance(i, dict)]
    model = evaluate_import(template, inputs)
    folder_uid = str(req.get("folderUid") or "")
    with app.store.tx(write=True) as db:
        _check_folder(db, folder_uid)
        rec = save_dashboard(db, model, folder_uid, overwrite=bool(req.get("overwrite")))
        revision = (
            rec["data"].get("revision") if isinstance(rec["data"].get("revision"), int) else 0
        )
        folder = _folder_fields(db, folder_uid)
    result = {
        "uid": rec["uid"],
        "pluginId": "",
        "title": rec["title"],
        "imported": True,
        "importedUri": f"db/{rec['slug']}",
        "importedUrl": f"/d/{rec['uid']}/{rec['slug']}",
        "slug": rec["slug"],
        "dashboardId": rec["id"],
        "folderId": folder.get("folderId", 0),
        "folderUid": folder_uid,
        "description": "",
        "path": "",
        "removed": False,
    }
    if revision:  # Grafana omits both when zero
        result.update(importedRevision=revision, revision=revision)
    return 200, result


def save_dashboard_api(app, req):
    model = req.get("dashboard")
    if not isinstance(model, dict):
        return 400, {"message": "bad request data"}
    folder_uid = str(req.get("folderUid") or "")
    with app.store.tx(write=True) as db:
        _check_folder(db, folder_uid)
        current = next(
            (d for d in db["dashboards"] if model.get("uid") and d["uid"] == model.get("uid")), None
        )
        if (
            current
            and current.get("provisioned")
            and not current["provisioned"].get("allowUiUpdates")
        ):
            return 400, {"message": "Cannot save provisioned dashboard"}
        rec = save_dashboard(db, model, folder_uid, overwrite=bool(req.get("overwrite")))
    return 200, {
        "id": rec["id"],
        "uid": rec["uid"],
        "url": f"/d/{rec['uid']}/{rec['slug']}",
        "status": "success",
        "version": rec["version"],
        "slug": rec["slug"],
        "folderUid": folder_uid,
    }


def ds_query(app, req):
    now = time.time()
    try:
        start = parse_time(req.get("from", "now-6h"), now)
        end = parse_time(req.get("to", "now"), now)
    except ValueError as e:
        return 400, {"message": f"bad request data: {e}"}
    results, failed = {}, False
    with app.store.tx() as db:
        sources = list(db["datasources"])
    for q in req.get("queries") or []:
        ref = q.get("refId") or "A"
        ref_ds = q.get("datasource")
        uid = ref_ds.get("uid") if isinstance(ref_ds, dict) else ref_ds
        if not uid and not q.get("datasourceId"):
            return 400, {"message": "Query missing datasource info"}
        ds = next(
            (
                d
                for d in sources
                if d["uid"] == uid or (not uid and d["id"] == q.get("datasourceId"))
            ),
            None,
        )
        if ds is None:
            return 404, {"message": "Data source not found"}
        try:
            if ds["type"] != "prometheus":
                raise DownstreamError(
                    f"the Grafana stand-in only queries Prometheus data sources, not {ds['type']}",
                    400,
                )
            results[ref] = {"status": 200, "frames": run_prometheus_query(ds, q, start, end)}
        except (DownstreamError, ValueError) as e:
            failed = True
            results[ref] = {
                "error": str(e),
                "errorSource": "downstream",
                "status": getattr(e, "status", 400),
            }
    return (400 if failed else 200), {"results": results}


# ---------------------------------------------------------------- command line


def _split_flags(args, names):
    """--name=value / --name value / -name value flags anywhere; the rest stays positional."""
    flags, rest, i = {}, [], 0
    while i < len(args):
        arg = args[i]
        key = arg.lstrip("-").split("=", 1)[0]
        if arg.startswith("-") and key in names:
            if names[key] is bool:
                flags[key] = True
            elif "=" in arg:
                flags[key] = arg.split("=", 1)[1]
            else:
                i += 1
                flags[key] = args[i] if i < len(args) else ""
        else:
            rest.append(arg)
        i += 1
    return flags, rest


def cmd_server(args):
    flags, rest = _split_flags(
        args,
        {
            "homepath": str,
            "config": str,
            "packaging": str,
            "pidfile": str,
            "v": bool,
            "version": bool,
        },
    )
    if flags.get("v") or flags.get("version"):
        print(f"Version {VERSION} (commit: {COMMIT}, branch: HEAD)")
        return 0
    settings = load_settings(rest, config=flags.get("config"), homepath=flags.get("homepath"))
    app = Grafana(settings).start()
    stop = threading.Event()
    # As PID 1 in a container a process gets no default SIGTERM action: handle it, so
    # `docker stop` ends the stand-in at once, as it does Grafana.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    log("server", "Shutdown started", reason="System signal")
    app.stop()
    return 0


def cmd_cli(args):
    flags, rest = _split_flags(
        args,
        {
            "homepath": str,
            "config": str,
            "configOverrides": str,
            "password-from-stdin": bool,
            "user-id": str,
            "debug": bool,
            "d": bool,
        },
    )
    if rest[:2] != ["admin", "reset-admin-password"]:
        print(
            "Error: ✗ the Grafana stand-in only implements 'admin reset-admin-password'",
            file=sys.stderr,
        )
        return 1
    if flags.get("password-from-stdin"):
        print("New Password: ")
        line = sys.stdin.readline()
        if line == "":
            raise StartupError("can't read password from stdin")
        password = line.rstrip("\n").rstrip("\r")
    else:
        password = rest[2] if len(rest) > 2 else ""
    if len(password) < 4:  # Grafana's default password policy
        raise StartupError("the new password doesn't meet the password policy criteria")
    overrides = (flags.get("configOverrides") or "").split()
    settings = load_settings(overrides, config=flags.get("config"), homepath=flags.get("homepath"))
    store = Store(settings["paths.data"])
    if not store.exists():
        raise StartupError("Could not read user from database. Error: user not found")
    user_id = int(flags.get("user-id") or ADMIN_USER_ID)
    with store.tx(write=True) as db:
        user = next((u for u in db["users"] if u["id"] == user_id), None)
        if user is None:
            raise StartupError("admin user cannot be found")
        if not user["isAdmin"]:
            raise StartupError(
                "reset-admin-password can only be used to reset an admin user account"
            )
        user["salt"] = new_uid(10)
        user["password"] = encode_password(password, user["salt"])
    print("\nAdmin password changed successfully ✔")
    return 0


def main(argv):
    args = list(argv[1:])
    if not args or args[0] in ("-v", "--version", "-V"):
        print(f"grafana version {VERSION}")
        return 0
    try:
        if args[0] == "server":
            return cmd_server(args[1:])
        if args[0] == "cli":
            return cmd_cli(args[1:])
        print(
            f"Error: ✗ unknown command {args[0]!r} (the stand-in knows 'server' and 'cli')",
            file=sys.stderr,
        )
        return 1
    except StartupError as e:
        print(f"Error: ✗ {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
