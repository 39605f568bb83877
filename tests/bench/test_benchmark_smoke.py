"""The benchmark's small run, so that its code cannot rot; its numbers are printed, not judged."""

import re
import subprocess
import sys

import pytest

from tests.e2e.lab import REPO

pytestmark = pytest.mark.e2e


def test_benchmark_smoke_prints_every_table():
    result = subprocess.run(
        [sys.executable, "-m", "tests.bench.benchmark", "--smoke"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    print(result.stdout)
    rows = re.findall(
        r"^\| (\d+) \| ([\d.]+) s \((\d+)/(\d+) ops changed\) \| ([\d.]+) s \((\d+)/",
        result.stdout,
        re.M,
    )
    assert [row[0] for row in rows] == ["1", "2"]
    assert all(row[5] == "0" for row in rows), "a no-change rerun changed something"
    for heading in (
        "one multi-target exporter",
        "series per table",
        "Telegram capture server",
        "N listed databases",
        "discovered databases (one server",
    ):
        assert heading in result.stdout
    discovered = re.findall(
        r"^\| 2 \| 2 s \| [\d.]+ s \| .* \((\d+)/\d+ ops changed\)", result.stdout, re.M
    )
    assert discovered == ["0"], "no discovered row, or its no-change rerun changed something"
    assert re.search(
        r"^\| 2 databases, 2 tries \| 2 s \| [\d.]+ / [\d.]+ s \| [\d.]+ / [\d.]+ s \|$",
        result.stdout,
        re.M,
    )
