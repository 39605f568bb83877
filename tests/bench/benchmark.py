"""pgmon's benchmark: prints numbers, passes or fails nothing.

    python3 -m tests.bench.benchmark            # the full run recorded in docs/benchmarks.md
    python3 -m tests.bench.benchmark --smoke    # a small run (the test command runs it so it cannot rot)

It uses the end-to-end lab (real Docker engine, PostgreSQL, pyinfra over SSH
to this machine) with its own base_dir, project and ports. For each size N it
measures the first deploy, a no-change rerun, adding one database and removing
it (wall seconds; operations changed / run). Then: exporter memory per database
with one exporter per database and with postgres_exporter's multi-target mode
on the same databases; Prometheus memory; scrape duration and series of a
database with many tables; the time from stopping a database to the
PostgresDown message at the Discord and Telegram capture servers, beside the
bound the configured intervals give.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from tests.e2e.capture import CaptureServer
from tests.e2e.lab import (
    DATABASES,
    DOCKER_BRIDGE_IP,
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
LEDGER = next(
    db for db in DATABASES if db.name == "ledger"
)  # alone on its server, so it can be stopped


def bench_databases(count: int) -> tuple[LabDatabase, ...]:
    return tuple(
        LabDatabase(f"bench{i:02d}", 5432, f"bench{i:02d}", "pgmon_bench", BENCH_PASSWORD)
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


def measure_sizes(deployment: Deployment, databases, sizes: list[int]) -> list[tuple]:
    rows = []
    names = [db.name for db in databases]
    for n in sizes:
        deployment.teardown()
        deployment.configure(names[:n])
        first = timed_run(deployment, f"first deploy of {n}")
        rerun = timed_run(deployment, f"no-change rerun of {n}")
        deployment.configure(names[: n + 1])
        add = timed_run(deployment, f"adding database {n + 1}")
        deployment.configure(names[:n])
        remove = timed_run(deployment, f"removing database {n + 1}")
        rows.append((n, first, rerun, add, remove))
        print(
            f"  N={n}: first {first[0]:.1f}s, rerun {rerun[0]:.1f}s, add {add[0]:.1f}s, remove {remove[0]:.1f}s",
            file=sys.stderr,
        )
    return rows


def measure_memory(deployment: Deployment, databases) -> dict[str, float]:
    """One exporter per database vs one multi-target exporter probing the same databases."""
    project = deployment.site.project
    exporters = [f"{project}-exporter-{db.name}" for db in databases]
    per_db = memory_mib(exporters)
    config = Path(tempfile.mkdtemp()) / "postgres_exporter.yml"
    config.write_text(
        "auth_modules:\n  bench:\n    type: userpass\n    userpass:\n"
        f"      username: pgmon_bench\n      password: {json.dumps(BENCH_PASSWORD)}\n"
        "    options:\n      sslmode: require\n"
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
            "quay.io/prometheuscommunity/postgres-exporter:v0.17.1",
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
                        "target": f"host.docker.internal:5432/{db.dbname}",
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
    many = LabDatabase("benchtables", 5432, "benchtables", "pgmon_bench", BENCH_PASSWORD)
    empty = bench_databases(2)
    lab.create_databases((many,))
    lab.psql(
        5432,
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
        lab.psql(5432, "benchtables", "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
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
    args = parser.parse_args()
    sizes, tables = ([1, 2], 20) if args.smoke else ([1, 10, 50], 1000)

    lab = Lab()
    lab.up()
    databases = bench_databases(max(sizes) + 1)
    lab.create_databases(databases)
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
        rows = measure_sizes(deployment, databases, sizes)
        deployment.configure([db.name for db in databases[: max(sizes)]])
        timed_run(deployment, "redeploying the largest size")
        memory = measure_memory(deployment, databases[: max(sizes)])
        table_cost = measure_tables(deployment, lab, tables)
        alert = measure_alert(deployment, lab)
    finally:
        deployment.teardown()
        discord.close()
        telegram.close()
        dashboard.shutdown()
        lab.down()

    n_max = max(sizes)
    print(
        f"pgmon benchmark, {time.strftime('%Y-%m-%d')}, {platform.node()}: {platform.processor() or platform.machine()},"
        f" {subprocess.run(['nproc'], text=True, capture_output=True).stdout.strip()} cores, Python"
        f" {platform.python_version()}; pyinfra over SSH on loopback\n"
    )
    print("| N databases | first deploy | no-change rerun | add one | remove one |")
    print("|---|---|---|---|---|")
    for n, first, rerun, add, remove in rows:
        cells = [
            f"{seconds:.1f} s ({ops} ops changed)" for seconds, ops in (first, rerun, add, remove)
        ]
        print(f"| {n} | " + " | ".join(cells) + " |")
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
