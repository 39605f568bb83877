"""How pgmon refuses settings: one ``DeployError`` whose report lists every problem, each naming its
``pgmon_*`` setting and the fix, before any operation touches the host."""

from __future__ import annotations

from pydantic import ValidationError
from pyinfra.api.exceptions import DeployError as PyinfraDeployError

from .thresholds import unknown_threshold_hint

SETTING_PREFIX = "pgmon_"


class DeployError(PyinfraDeployError):
    """A problem the user must fix; its message names the field and the fix.

    A pyinfra error, so the CLI prints the message without a traceback.
    """


def format_validation_error(error: ValidationError) -> list[str]:
    """One line per problem pydantic found, each starting with the ``pgmon_`` setting's path."""
    lines = []
    for item in error.errors():
        path = SETTING_PREFIX + "".join(
            f"[{part}]" if isinstance(part, int) else f".{part}" for part in item["loc"]
        ).lstrip(".")
        if item["type"] == "extra_forbidden" and "alert_thresholds" in item["loc"]:
            lines.append(f"{path}: {unknown_threshold_hint(item['loc'])}")
        elif item["type"] == "extra_forbidden":
            lines.append(
                f"{path}: unknown key; remove it or fix its spelling (see README, Configuration)"
            )
        elif not item["loc"]:  # the whole-model checks: one line per problem, each naming its field
            lines += [
                SETTING_PREFIX + line
                for line in item["msg"].removeprefix("Value error, ").splitlines()
            ]
        else:
            message = item["msg"].removeprefix("Value error, ")
            lines.append(f"{path}: {message}")
    return lines


def problem_report(problems: list[str]) -> str:
    """The message of the DeployError that refuses the settings: every problem, one a line."""
    return "pgmon cannot deploy; nothing on the host was changed. Fix:\n" + "\n".join(
        f"  - {p}" for p in problems
    )
