"""Before step 2: every image the stack runs is on the host, pulled now if it is not.

``docker compose up`` would pull a missing image itself, but only after the files changed, and its error names
an image, not the setting. Pulled first, an image that cannot be had (a tag that does not exist, a registry out
of reach) fails the run naming ``pgmon_images.<component>``, before any file is written or any container
stopped. An unchanged re-run finds every image present and runs nothing.
"""

from __future__ import annotations

import shlex

from pyinfra import host
from pyinfra.api import FunctionCommand, deploy, operation

from .host_facts import image_name
from .host_lock import claim_host
from .host_state import HostState
from .settings import DEFAULT_IMAGES, Settings


def missing_images(settings: Settings, state: HostState) -> dict[str, str]:
    """component -> image, for each image the stack runs that the host does not have."""
    images = {component: settings.image(component) for component in DEFAULT_IMAGES}
    return {c: image for c, image in images.items() if image_name(image) not in state.images}


def pull_command(missing: dict[str, str]) -> str:
    """Shell pulling each image; the first that fails ends it, naming its setting and Docker's reason."""
    steps = []
    for component, image in missing.items():
        problem = (
            f"pgmon_images.{component}: {image} cannot be pulled, and nothing was changed. "
            "Set a tag that exists, or make the registry reachable from the host (docs/versions.md)"
        )
        steps.append(
            f"out=$(docker pull --quiet {shlex.quote(image)} 2>&1) || "
            f"{{ printf '%s\\n' {shlex.quote(problem)} \"$out\" >&2; exit 1; }}"
        )
    return "\n".join(steps)


@operation(is_idempotent=False)
def pull_images(missing: dict[str, str], claim: FunctionCommand | None = None):
    """
    Pull the images the stack runs that the host lacks.

    + missing: component -> image, from ``missing_images``
    + claim: run before the pull (``host_lock.claim_host``)

    **Example:**

    .. code:: python

        pull_images(name="Pull pgmon's images", missing={"alertmanager": "prom/alertmanager:v0.35.1"})
    """
    if not missing:
        return
    if not host.state.is_executing:
        for image in missing.values():
            host.log(f"pgmon: will pull {image}")
    if claim is not None:
        yield claim
    yield pull_command(missing)


@deploy("Pull the pgmon images")
def pull_stack_images(settings: Settings, state: HostState):
    pull_images(
        name="Pull the images the stack runs that the host lacks",
        missing=missing_images(settings, state),
        claim=claim_host(settings, state),
    )
