"""The images the stack runs: pgmon's defaults, the oldest version of each its files work with, and the
version an image's tag says. ``pgmon_images`` overrides the defaults (docs/versions.md)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal

# The images the stack runs, on lines their upstream supports (docs/versions.md: what the tests ran of each
# line). Prometheus 3.13 is the LTS line (to 2027-07-31); Alertmanager, supported in its newest minor only, reads Telegram chat ids from a file (0.31+);
# postgres_exporter stays on the 0.19 the tests ran: no 0.20 build exists where they run (pgmon's flags and
# rules follow 0.20.1's renames, read off its source).
DEFAULT_IMAGES = {
    "prometheus": "prom/prometheus:v3.13.3",
    "alertmanager": "prom/alertmanager:v0.35.1",
    "postgres_exporter": "quay.io/prometheuscommunity/postgres-exporter:v0.19.1",
    "node_exporter": "prom/node-exporter:v1.11.1",
    "grafana": "grafana/grafana:12.2.1",
}
# The oldest version of each that pgmon's files work with, where an image's tag says its version.
MINIMUM_VERSIONS = {
    "prometheus": (
        2,
        55,
    ),  # the first that reads Prometheus 3's TSDB: a way back after an upgrade
    "alertmanager": (0, 31),  # telegram_configs.chat_id_file
    "postgres_exporter": (0, 17),
}
_VERSION_TAG_RE = re.compile(r":v?([0-9]+)\.([0-9]+)(?:\.[0-9]+)?(?:$|[-+@])")

Component = Literal[tuple(DEFAULT_IMAGES)]  # the keys pgmon_images may override


def image_version(image: str) -> tuple[int, int] | None:
    """(major, minor) from an image's tag (``prom/prometheus:v3.13.3`` -> (3, 13)); None if the tag does not say."""
    match = _VERSION_TAG_RE.search(image)
    return (int(match.group(1)), int(match.group(2))) if match else None


def too_old_images(images: Mapping[str, str]) -> list[str]:
    """A problem line for each image in ``pgmon_images`` whose tag says a version older than pgmon supports."""
    problems = []
    for component, image in images.items():
        version, minimum = image_version(image), MINIMUM_VERSIONS.get(component)
        if version and minimum and version < minimum:
            problems.append(
                f"images.{component}: {image!r} is older than pgmon supports "
                f"({'.'.join(map(str, minimum))} or later; the default is {DEFAULT_IMAGES[component]!r})"
            )
    return problems
