"""pgmon's benchmark: prints numbers, passes or fails nothing.

    python3 -m tests.bench.benchmark            # the full run recorded in docs/benchmarks.md
    python3 -m tests.bench.benchmark --smoke    # a small run (the test command runs it so it cannot rot)

It uses the end-to-end lab (real Docker engine, pyinfra over SSH to this
machine) with its own base_dir, project and ports, and a PostgreSQL 17 of its
own (lab.BENCH_SERVER, max_connections 1200). For each size N it
measures the first deploy, a no-change rerun, adding one database and removing
it (wall seconds; operations changed / run). Then: exporter memory per database
with one exporter per database and with postgres_exporter's multi-target mode
on the same databases; Prometheus memory; scrape duration and series of a
database with many tables; the time from stopping a database to the
PostgresDown message at the Discord and Telegram capture servers, beside the
bound the configured intervals give. Listed sizes stop at the first whose deploy
fails, printed with its reason. Then one discovered server (``pgmon_servers``) at
each size: the same costs, and the discovery latency over overlapping tries.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import requests

from tests.e2e.capture import CaptureServer
from tests.e2e.lab import (
    BENCH_SERVER,
    DATABASES,
    DOCKER_BRIDGE_IP,
    TESTED_IMAGES,
    Deployment,
    Lab,
    LabDatabase,
    Site,
    prometheus_query,
    serve_dashboard_fixture,
    wait_until,
)

SITE = Site(
    base_dir="/opt/pgmon-bench",
    project="pgmon-bench",
    prometheus_port=29090,
    alertmanager_port=29093,
    grafana_port=23000,
)
BENCH_PASSWORD = "b3nch@:/#%'\"x"
# Every bench database is on the benchmark's own PostgreSQL 17 (max_connections 1200: 500 exporters fit;
# no SSL, as the lab's other containers).
PORT = BENCH_SERVER.port
LEDGER = next(
    db for db in DATABASES if db.name == "ledger"
)  # alone on its server, so it can be stopped


def bench_databases(count: int) -> tuple[LabDatabase, ...]:
    return tuple(
        LabDatabase(
            f"bench{i:02d}", PORT, f"bench{i:02d}", "pgmon_bench", BENCH_PASSWORD, sslmode="disable"
        )
        for i in range(1, count + 1)
    )


def grand_total(output: str) -> tuple[int, int]:
    """(operations that changed something, operations run) from pyinfra's results table."""
    match = re.search(r"Grand total\s+(\d+)\s+(\S+)\s+(\S+)\s+(\S+)", output)
    if not match:
        raise RuntimeError("no results table in pyinfra's output:\n" + output[-3000:])
    total, success = int(match.group(1)), match.group(2)
    return (0 if success == "-" else int(success)), total


def timed_run(deployment: Deployment, label: str) -> tuple[float, str]:
    started = time.monotonic()
    result = deployment.run()
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise RuntimeError(f"{label} failed:\n{output[-4000:]}")
    changed, total = grand_total(output)
    return elapsed, f"{changed}/{total}"


def memory_mib(containers: list[str]) -> dict[str, float]:
    out = subprocess.run(
        ["docker", "stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}", *containers],
        text=True,
        capture_output=True,
        check=True,
    ).stdout
    units = {"B": 1 / 2**20, "KiB": 1 / 1024, "MiB": 1, "GiB": 1024}
    usage = {}
    for line in out.splitlines():
        name, amount = line.split()[:2]
        number, unit = re.match(r"([\d.]+)(\w+)", amount).groups()
        usage[name] = float(number) * units[unit]
    return usage


def stack_cost(
    deployment: Deployment, lab: Lab, selector: str, containers: list[str], n: int, scrape: int
) -> dict:
    """Once all ``n`` databases (``selector``) are scraped and three more scrape rounds have passed: memory of
    ``containers`` (the exporters) and Prometheus, scrape durations, samples per database, connections."""
    scraped = f"count(up{selector} == 1) == {n}"
    wait_until(
        f"{n} databases scraped", lambda: prometheus_query(scraped, SITE.prometheus_port), 300
    )
    time.sleep(3 * scrape)

    def value(query: str) -> float:
        result = prometheus_query(query, SITE.prometheus_port)
        return float(result[0]["value"][1]) if result else float("nan")

    prometheus = f"{deployment.site.project}-prometheus"
    memory = memory_mib([*containers, prometheus])
    return {
        "exporters": sum(memory[c] for c in containers),
        "prometheus": memory[prometheus],
        "scrape_mean": value(f"avg(scrape_duration_seconds{selector})"),
        "scrape_max": value(
            f"max(max_over_time(scrape_duration_seconds{selector}[{3 * scrape}s]))"
        ),
        "samples": value(f"avg(scrape_samples_scraped{selector})"),
        "connections": connections_held(lab, scrape),
    }


def measure_sizes(
    deployment: Deployment, lab: Lab, databases, sizes: list[int], scrape: int
) -> tuple[list[tuple], tuple[int, str] | None]:
    """Listed databases, one exporter each: runs at each size, and what the stack costs there; the sizes
    stop at the first whose deploy fails, given back as (size, the deploy's last line)."""
    rows = []
    names = [db.name for db in databases]
    project = deployment.site.project
    timing = {"pgmon_scrape_interval_seconds": scrape, "pgmon_evaluation_interval_seconds": scrape}
    for n in sizes:
        deployment.teardown()
        deployment.configure(names[:n], **timing)
        try:
            first = timed_run(deployment, f"first deploy of {n}")
        except RuntimeError as failure:
            return rows, (n, last_words(failure))
        rerun, exec_true = rerun_beside_floor(deployment, f"no-change rerun of {n}")
        cost = stack_cost(
            deployment,
            lab,
            '{job="postgres"}',
            [f"{project}-exporter-{name}" for name in names[:n]],
            n,
            scrape,
        )
        deployment.configure(names[: n + 1], **timing)
        add = timed_run(deployment, f"adding database {n + 1}")
        deployment.configure(names[:n], **timing)
        remove = timed_run(deployment, f"removing database {n + 1}")
        rows.append((n, first, rerun, add, remove, exec_true, cost))
        print(
            f"  N={n}: first {first[0]:.1f}s, rerun {rerun[0]:.1f}s (exec true {exec_true:.1f}s), "
            f"add {add[0]:.1f}s, remove {remove[0]:.1f}s, {cost}",
            file=sys.stderr,
        )
    return rows, None


def last_words(failure: RuntimeError) -> str:
    """The line of a failed run that says why: pgmon's own error where it gave one."""
    lines = [line.strip() for line in str(failure).splitlines() if line.strip()]
    reasons = [line for line in lines if "pgmon" in line or "Error" in line]
    return (reasons or lines)[-1][:300]


# A no-change rerun and its floor are compared by the median of a few tries each, taken in turns.
TRIES = 3


def rerun_beside_floor(deployment: Deployment, label: str) -> tuple[tuple[float, str], float]:
    """(the median no-change rerun with its operations changed, the median ``exec -- true``)."""
    reruns, floors = [], []
    for _ in range(TRIES):
        reruns.append(timed_run(deployment, label))
        floors.append(timed_exec_true(deployment))
    return (statistics.median(r[0] for r in reruns), reruns[-1][1]), statistics.median(floors)


def timed_exec_true(deployment: Deployment) -> float:
    """``pyinfra inventory.py exec -- true`` over the same SSH: the floor a no-change run is judged against."""
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "pyinfra", "-y", "inventory.py", "exec", "--", "true"],
        cwd=deployment.project.directory,
        env={**os.environ, **deployment.project.environment},
        check=True,
        capture_output=True,
    )
    return time.monotonic() - started


def measure_memory(deployment: Deployment, databases) -> dict[str, float]:
    """One exporter per database vs one multi-target exporter probing the same databases."""
    project = deployment.site.project
    exporters = [f"{project}-exporter-{db.name}" for db in databases]
    per_db = memory_mib(exporters)
    config = Path(tempfile.mkdtemp()) / "postgres_exporter.yml"
    config.write_text(
        "auth_modules:\n  bench:\n    type: userpass\n    userpass:\n"
        f"      username: pgmon_bench\n      password: {json.dumps(BENCH_PASSWORD)}\n"
        "    options:\n      sslmode: disable\n"
    )
    config.chmod(0o644)
    name = f"{project}-multitarget"
    subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    subprocess.run(
        [
            "docker",
            "run",
            "-d",
            "--name",
            name,
            "--network",
            f"{project}-metrics",
            "--add-host",
            "host.docker.internal:host-gateway",
            "-v",
            f"{config}:/etc/pe.yml:ro",
            TESTED_IMAGES["postgres_exporter"],
            "--config.file=/etc/pe.yml",
        ],
        check=True,
        capture_output=True,
    )
    try:
        ip = subprocess.run(
            [
                "docker",
                "inspect",
                "-f",
                "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                name,
            ],
            text=True,
            capture_output=True,
            check=True,
        ).stdout.strip()

        def answering() -> bool:
            try:
                return requests.get(f"http://{ip}:9187/", timeout=2).status_code == 200
            except requests.ConnectionError:
                return False

        # `docker run -d` returns before the exporter listens (a probe at once was refused, once in CI).
        wait_until("the multi-target exporter answers", answering, 30)
        for _ in range(3):  # as Prometheus would, several scrape rounds
            for db in databases:
                response = requests.get(
                    f"http://{ip}:9187/probe",
                    timeout=30,
                    params={
                        "target": f"host.docker.internal:{PORT}/{db.dbname}",
                        "auth_module": "bench",
                    },
                )
                if "pg_up 1" not in response.text:
                    raise RuntimeError(
                        f"multi-target probe of {db.dbname} failed: {response.text[-500:]}"
                    )
        multi = memory_mib([name])[name]
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    return {
        "per_db_mean": statistics.mean(per_db.values()),
        "per_db_total": sum(per_db.values()),
        "multi_total": multi,
        "prometheus": memory_mib([f"{project}-prometheus"])[f"{project}-prometheus"],
    }


def measure_tables(deployment: Deployment, lab: Lab, tables: int) -> dict[str, float]:
    """Scrape cost of a database with ``tables`` tables against an empty one, both non-primary exporters."""
    many = LabDatabase(
        "benchtables", PORT, "benchtables", "pgmon_bench", BENCH_PASSWORD, sslmode="disable"
    )
    empty = bench_databases(2)
    lab.create_databases((many,))
    lab.psql(
        PORT,
        "benchtables",
        f"""
        SELECT format('CREATE TABLE IF NOT EXISTS t%s (id int PRIMARY KEY, v text)', g)
          FROM generate_series(1, {tables}) g \\gexec
        SELECT format('INSERT INTO t%s VALUES (1, ''x'') ON CONFLICT DO NOTHING', g)
          FROM generate_series(1, {tables}) g \\gexec
        SELECT format('SELECT count(*) FROM t%s', g) FROM generate_series(1, {tables}) g \\gexec
    """,
    )
    tables = int(
        lab.psql(PORT, "benchtables", "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
    )
    deployment.databases = deployment.databases + (many,)
    deployment.secrets[deployment.password_env(many.name)] = many.password
    deployment.teardown()
    deployment.configure(
        [empty[0].name, empty[1].name, many.name]
    )  # the first is the server's primary
    timed_run(deployment, "deploying the many-table database")
    deadline = time.monotonic() + 60

    def sample(query: str) -> dict[str, float]:
        return {
            r["metric"]["database"]: float(r["value"][1])
            for r in prometheus_query(query, SITE.prometheus_port)
        }

    while time.monotonic() < deadline:  # two scrapes after the first, so the timings are steady
        counts = sample('count_over_time(scrape_duration_seconds{job="postgres"}[1m])')
        if counts.get(many.name, 0) >= 3 and counts.get(empty[1].name, 0) >= 3:
            break
        time.sleep(1)
    duration = sample('scrape_duration_seconds{job="postgres"}')
    samples = sample('scrape_samples_scraped{job="postgres"}')

    # The same database with table_metrics off (its exporter is recreated, so a fresh sample is one scrape away).
    group_data = deployment.group_data([empty[0].name, empty[1].name, many.name])
    group_data["pgmon_databases"][2]["table_metrics"] = False
    deployment.project.write(deployment.lab.inventory_source(), group_data)
    timed_run(deployment, "turning table metrics off")
    without = wait_until(
        "a scrape without table metrics",
        lambda: (
            (v := sample('scrape_samples_scraped{job="postgres"}').get(many.name)) is not None
            and v < samples[many.name]
            and v
        ),
        60,
    )
    return {
        "tables": tables,
        "duration": duration[many.name],
        "duration_empty": duration[empty[1].name],
        "series": samples[many.name],
        "series_empty": samples[empty[1].name],
        "per_table": (samples[many.name] - samples[empty[1].name]) / tables,
        "series_without_tables": without,
    }


DISCOVERED = (
    "bench"  # the pgmon_servers entry of the discovered mode: main's databases named bt_NNN
)
TENANT_PREFIX = "bt_"
PROBE_ROLE_LIMIT = 40


def tenant_name(i: int) -> str:
    return f"{TENANT_PREFIX}{i:03d}"


def set_tenants(lab: Lab, count: int) -> None:
    """Exactly ``count`` tenant databases on the bench server (bt_001 ...): the missing created, the others dropped."""
    lab.psql(
        PORT,
        "postgres",
        f"""
        SELECT format('CREATE DATABASE %I', n) FROM (SELECT '{TENANT_PREFIX}' || lpad(g::text, 3, '0') AS n
          FROM generate_series(1, {count}) g) t
          WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = n) \\gexec
        SELECT format('DROP DATABASE %I WITH (FORCE)', datname) FROM pg_database
          WHERE datname LIKE '{TENANT_PREFIX}%' AND substr(datname, 4)::int > {count} \\gexec
        """,
    )


def discovered_group_data(scrape_seconds: int, probe_seconds: int | None = None) -> dict:
    return {
        "pgmon_servers": [
            {
                "name": DISCOVERED,
                "host": "host.docker.internal",
                "port": PORT,
                "sslmode": "disable",
                "user": "pgmon_bench",
                "password_env": "PGMON_BENCH_DISCOVERED_PASSWORD",
                "include": [f"{TENANT_PREFIX}.*"],
                "scrape_interval_seconds": probe_seconds,
            }
        ],
        "pgmon_scrape_interval_seconds": scrape_seconds,
        "pgmon_evaluation_interval_seconds": scrape_seconds,
    }


def connections_held(lab: Lab, seconds: float) -> int:
    """The most connections of the benchmark's role seen on the bench server over ``seconds``, sampled every 0.2 s."""
    most, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            count = lab.psql(
                PORT,
                "postgres",
                "SELECT count(*) FROM pg_stat_activity WHERE usename = 'pgmon_bench'",
            )
        except subprocess.CalledProcessError:
            return -1  # not even the superuser got in: max_connections reached
        most = max(most, int(count))  # psql itself logs in as postgres
        time.sleep(0.2)
    return most


def measure_discovered(
    deployment: Deployment,
    lab: Lab,
    sizes: list[tuple[int, int | None]],
    tries: int,
    scrape_seconds: int,
) -> list[dict]:
    """The discovered mode at each (size, probe interval): deploy, rerun, memory, scrapes, series and
    connections; then how long databases created or dropped take to appear in or leave Prometheus."""
    deployment.secrets["PGMON_BENCH_DISCOVERED_PASSWORD"] = BENCH_PASSWORD
    # As docs/many-databases.md advises: the role's limit bounds the probes (a refused one fails one scrape).
    lab.psql(PORT, "postgres", f"ALTER ROLE pgmon_bench CONNECTION LIMIT {PROBE_ROLE_LIMIT}")
    project = deployment.site.project
    containers = [f"{project}-exporter-{DISCOVERED}", f"{project}-tenants-{DISCOVERED}"]
    rows = []
    for n, probe_seconds in sizes:
        interval = probe_seconds or scrape_seconds
        set_tenants(lab, n)
        deployment.teardown()
        deployment.configure([], **discovered_group_data(scrape_seconds, probe_seconds))
        row = {"n": n, "interval": interval}
        try:
            row["first"] = timed_run(deployment, f"first deploy of {n} discovered")
        except RuntimeError as failure:
            rows.append({**row, "failed": last_words(failure)})
            print(f"  discovered N={n} every {interval}s: {rows[-1]}", file=sys.stderr)
            continue
        row["rerun"], row["exec_true"] = rerun_beside_floor(
            deployment, f"no-change rerun of {n} discovered"
        )
        row.update(
            stack_cost(
                deployment, lab, f'{{discovered_by="{DISCOVERED}"}}', containers, n, interval
            )
        )
        row["created"], row["dropped"] = discovery_latency(lab, n, tries, interval)
        rows.append(row)
        print(f"  discovered N={n} every {interval}s: {row}", file=sys.stderr)
    set_tenants(lab, 0)
    lab.psql(PORT, "postgres", "ALTER ROLE pgmon_bench CONNECTION LIMIT -1")
    return rows


def discovery_latency(
    lab: Lab, base: int, tries: int, interval: int
) -> tuple[list[float], list[float]]:
    """Seconds from ``CREATE DATABASE`` to its first sample and from ``DROP DATABASE`` to its ``up`` series
    gone, for ``tries`` databases beyond the ``base`` ones. The tries overlap: one starts every
    interval / tries, so that together they fall at every phase of the probe and listing cycles without
    taking ``tries`` intervals each."""
    names = [tenant_name(base + 1 + i) for i in range(tries)]
    pattern = "|".join(f"{DISCOVERED}/{name}" for name in names)
    # The listing's 15 s, then a probe; for a dropped one, the stale markers about one interval later.
    deadline = 3 * interval + 120

    def present(metric: str) -> set[str]:
        series = prometheus_query(f'{metric}{{database=~"{pattern}"}}', SITE.prometheus_port)
        return {s["metric"]["database"].split("/", 1)[1] for s in series}

    def paced(sql: str, done: Callable[[], set[str]]) -> list[float]:
        started: dict[str, float] = {}
        seen: dict[str, float] = {}

        def record() -> bool:
            for name in done() - seen.keys():
                seen[name] = time.monotonic()
            return len(seen) == len(names)

        for name in names:
            lab.psql(PORT, "postgres", sql.format(name))
            started[name] = time.monotonic()
            next_start = started[name] + interval / tries
            while time.monotonic() < next_start:  # pacing the tries, watching the earlier ones
                record()
                time.sleep(0.5)
        wait_until(f"{len(names)} discovery tries", record, deadline, interval=0.5)
        return [seen[name] - started[name] for name in names]

    created = paced("CREATE DATABASE {}", lambda: present("pg_up"))
    dropped = paced("DROP DATABASE {} WITH (FORCE)", lambda: set(names) - present("up"))
    return created, dropped


def measure_alert(deployment: Deployment, lab: Lab) -> dict[str, float]:
    deployment.teardown()
    deployment.configure([LEDGER.name])
    timed_run(deployment, "deploying ledger")
    deployment.discord.clear()
    deployment.telegram.clear()
    stopped = time.monotonic()
    lab.stop_cluster(LEDGER.port)
    try:
        arrival = {}
        for channel in (deployment.discord, deployment.telegram):
            message = channel.wait_for(
                lambda m: "PostgresDown" in m.text and "ledger" in m.text, timeout=120
            )
            arrival[channel.kind] = message.at - stopped
    finally:
        lab.start_cluster(LEDGER.port)
    group = deployment.group_data([])
    timing = group["pgmon_alert_timing"]
    seconds = {
        k: int(v.rstrip("s")) for k, v in timing.items() if k in ("postgres_down_for", "group_wait")
    }
    bound = (
        group["pgmon_scrape_interval_seconds"]
        + group["pgmon_evaluation_interval_seconds"]
        + seconds["postgres_down_for"]
        + seconds["group_wait"]
    )
    return {**arrival, "bound": bound}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="small sizes, for the test command")
    parser.add_argument(
        "--discovered-only", action="store_true", help="only the discovered mode (pgmon_servers)"
    )
    parser.add_argument(
        "--listed-only", action="store_true", help="only the listed mode (pgmon_databases)"
    )
    parser.add_argument(
        "--sizes", help="the listed mode's sizes, comma-separated (default 1,50,200,500)"
    )
    parser.add_argument(
        "--discovered-sizes",
        help="the discovered mode's sizes, comma-separated, each with the server's scrape_interval_seconds"
        " after a colon where it is not the scrape interval (default 50,200,500:60)",
    )
    args = parser.parse_args()
    # The sizes at the production scrape interval: the lab's 2 s would make 500 exporters the CPU's.
    sizes, tables, scrape = ([1, 2], 20, 2) if args.smoke else ([1, 50, 200, 500], 1000, 15)
    if args.sizes:
        sizes = [int(n) for n in args.sizes.split(",")]
    discovered_sizes, tries = ("2", 2) if args.smoke else ("50,200,500:60", 20)
    discovered = [
        (int(n), int(probe) if probe else None)
        for n, _, probe in (
            size.partition(":") for size in (args.discovered_sizes or discovered_sizes).split(",")
        )
    ]

    lab = Lab()
    lab.up()
    lab.start_cluster(PORT)
    databases = bench_databases(max(sizes) + 1)
    if not args.discovered_only:
        lab.create_databases(databases)
    else:  # the discovered databases' role only
        lab.create_databases(databases[:1])
    dashboard = serve_dashboard_fixture()
    discord = CaptureServer("discord", DOCKER_BRIDGE_IP, "4242/benchtoken")
    telegram = CaptureServer("telegram", DOCKER_BRIDGE_IP, "4242:benchtoken")
    deployment = Deployment(
        lab,
        Path(tempfile.mkdtemp(prefix="pgmon-bench-")),
        discord,
        telegram,
        f"http://127.0.0.1:{dashboard.server_address[1]}",
        databases + (LEDGER,),
        SITE,
    )
    try:
        if not args.discovered_only:
            rows, listed_failure = measure_sizes(deployment, lab, databases, sizes, scrape)
            if not rows:
                raise RuntimeError(f"listed N={listed_failure[0]}: {listed_failure[1]}")
            largest = rows[-1][0]
            # At the sizes' scrape interval: 200 exporters at the lab's 2 s overran this host (pg_up 0).
            deployment.configure(
                [db.name for db in databases[:largest]],
                pgmon_scrape_interval_seconds=scrape,
                pgmon_evaluation_interval_seconds=scrape,
            )
            timed_run(deployment, "redeploying the largest size")
            memory = measure_memory(deployment, databases[:largest])
            table_cost = measure_tables(deployment, lab, tables)
            alert = measure_alert(deployment, lab)
        if not args.listed_only:
            discovered_rows = measure_discovered(deployment, lab, discovered, tries, scrape)
    finally:
        deployment.teardown()
        discord.close()
        telegram.close()
        dashboard.shutdown()
        lab.down()

    print(
        f"pgmon benchmark, {time.strftime('%Y-%m-%d')}, {platform.node()}: {platform.processor() or platform.machine()},"
        f" {subprocess.run(['nproc'], text=True, capture_output=True).stdout.strip()} cores, Python"
        f" {platform.python_version()}; pyinfra over SSH on loopback\n"
    )
    if not args.discovered_only:
        print_listed(rows, listed_failure, memory, table_cost, alert)
    if not args.listed_only:
        print_discovered(discovered_rows)
    return 0


def connections_text(most: int) -> str:
    return "max_connections reached" if most < 0 else str(most)


def print_discovered(rows: list[dict]) -> None:
    print(
        f"\n| discovered databases (one server, role limit {PROBE_ROLE_LIMIT}) | probed every "
        "| first deploy | no-change rerun / `pyinfra … exec -- true` "
        "| exporters' memory | Prometheus memory | scrape duration, mean / max | samples per database "
        "| connections held, most |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        if "failed" in row:
            print(f"| {row['n']} | {row['interval']} s | failed: {row['failed']} |||||||")
            continue
        print(
            f"| {row['n']} | {row['interval']} s | {row['first'][0]:.1f} s "
            f"| {row['rerun'][0]:.2f} s / {row['exec_true']:.2f} s = {row['rerun'][0] / row['exec_true']:.2f}× "
            f"({row['rerun'][1]} ops changed)"
            f" | {row['exporters']:.1f} MiB | {row['prometheus']:.1f} MiB"
            f" | {row['scrape_mean'] * 1000:.0f} / {row['scrape_max'] * 1000:.0f} ms"
            f" | {row['samples']:.0f} | {connections_text(row['connections'])} |"
        )
    print(
        "\n| discovery latency (tries overlapping, one every interval / tries) | probed every "
        "| `CREATE DATABASE` to first sample, median / max | `DROP DATABASE` to its series gone, median / max |"
    )
    print("|---|---|---|---|")
    for row in rows:
        if "created" in row:
            created, dropped = row["created"], row["dropped"]
            print(
                f"| {row['n']} databases, {len(created)} tries | {row['interval']} s "
                f"| {statistics.median(created):.1f} / {max(created):.1f} s "
                f"| {statistics.median(dropped):.1f} / {max(dropped):.1f} s |"
            )


def print_listed(rows, failure: tuple[int, str] | None, memory, table_cost, alert) -> None:
    n_max = rows[-1][0]
    print("| N databases | first deploy | no-change rerun | add one | remove one |")
    print("|---|---|---|---|---|")
    for n, first, rerun, add, remove, _, _ in rows:
        cells = [
            f"{seconds:.1f} s ({ops} ops changed)" for seconds, ops in (first, rerun, add, remove)
        ]
        print(f"| {n} | " + " | ".join(cells) + " |")
    if failure:
        print(f"| {failure[0]} | failed: {failure[1]} ||||")
    print(
        "\n| N listed databases | no-change rerun / `pyinfra … exec -- true` | exporters' memory "
        "| Prometheus memory | scrape duration, mean / max | samples per database | connections held, most |"
    )
    print("|---|---|---|---|---|---|---|")
    for n, _, rerun, _, _, exec_true, cost in rows:
        print(
            f"| {n} | {rerun[0]:.2f} s / {exec_true:.2f} s = {rerun[0] / exec_true:.2f}× "
            f"| {cost['exporters']:.1f} MiB | {cost['prometheus']:.1f} MiB "
            f"| {cost['scrape_mean'] * 1000:.0f} / {cost['scrape_max'] * 1000:.0f} ms "
            f"| {cost['samples']:.0f} | {connections_text(cost['connections'])} |"
        )
    print(f"\n| memory at N={n_max} | MiB |\n|---|---|")
    print(f"| one exporter per database, mean | {memory['per_db_mean']:.1f} |")
    print(f"| one exporter per database, all {n_max} | {memory['per_db_total']:.1f} |")
    print(f"| one multi-target exporter probing the same {n_max} | {memory['multi_total']:.1f} |")
    print(f"| Prometheus | {memory['prometheus']:.1f} |")
    print(f"\n| scrape of a database with {table_cost['tables']} tables | value |\n|---|---|")
    print(
        f"| scrape duration | {table_cost['duration'] * 1000:.0f} ms (empty database: "
        f"{table_cost['duration_empty'] * 1000:.0f} ms) |"
    )
    print(
        f"| samples per scrape | {table_cost['series']:.0f} (empty database: {table_cost['series_empty']:.0f}) |"
    )
    print(f"| series per table | {table_cost['per_table']:.1f} |")
    print(
        f"| samples per scrape with `table_metrics: False` | {table_cost['series_without_tables']:.0f} |"
    )
    print("\n| PostgresDown, database stopped to message | seconds |\n|---|---|")
    print(f"| Discord capture server | {alert['discord']:.1f} |")
    print(f"| Telegram capture server | {alert['telegram']:.1f} |")
    print(f"| bound: scrape + evaluation + for + group_wait | {alert['bound']} |")


if __name__ == "__main__":
    raise SystemExit(main())
