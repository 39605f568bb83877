"""How pgmon refuses settings: one ``DeployError`` whose report lists every problem, each naming its
``pgmon_*`` setting and the fix, before any operation touches the host."""

from __future__ import annotations

import difflib
from typing import get_args

from pydantic import BaseModel, ValidationError
from pyinfra.api.exceptions import DeployError as PyinfraDeployError

from .thresholds import unknown_threshold_hint

SETTING_PREFIX = "pgmon_"


class DeployError(PyinfraDeployError):
    """A problem the user must fix; its message names the field and the fix.

    A pyinfra error, so the CLI prints the message without a traceback.
    """


def format_validation_error(error: ValidationError, model: type[BaseModel]) -> list[str]:
    """One line per problem pydantic found in ``model``, each starting with the ``pgmon_`` setting's
    path; an unknown key, wherever it stands, with the key it may mean."""
    lines = []
    for item in error.errors():
        path = SETTING_PREFIX + "".join(
            f"[{part}]" if isinstance(part, int) else f".{part}" for part in item["loc"]
        ).lstrip(".")
        if item["type"] == "extra_forbidden" and "alert_thresholds" in item["loc"]:
            lines.append(f"{path}: {unknown_threshold_hint(item['loc'])}")
        elif item["type"] == "extra_forbidden":
            close = difflib.get_close_matches(
                str(item["loc"][-1]), _keys_at(model, item["loc"]), n=1
            )
            hint = f"did you mean {close[0]}?" if close else "remove it or fix its spelling"
            lines.append(f"{path}: unknown key; {hint} (docs/configuration.md)")
        elif not item["loc"]:  # the whole-model checks: one line per problem, each naming its field
            lines += [
                SETTING_PREFIX + line
                for line in item["msg"].removeprefix("Value error, ").splitlines()
            ]
        else:
            message = item["msg"].removeprefix("Value error, ")
            lines.append(f"{path}: {message}")
    return lines


def problem_report(problems: list[str], command: str = "deploy") -> str:
    """The message of the DeployError that refuses the settings: every problem, one a line.
    ``command`` is what was refused, as in "pgmon cannot silence"."""
    return f"pgmon cannot {command}; nothing on the host was changed. Fix:\n" + "\n".join(
        f"  - {p}" for p in problems
    )


def _keys_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """The keys the model at ``loc``'s parent takes (``("databases", 0, "x")``: a Database's)."""
    for part in loc[:-1]:
        if isinstance(part, int):  # an entry of a list
            continue
        field = model.model_fields.get(part)
        inner = field and _model_in(field.annotation)
        if inner is None:
            return []
        model = inner
    return [field.alias or name for name, field in model.model_fields.items()]


def _model_in(annotation) -> type[BaseModel] | None:
    """The model an annotation holds: ``Discord | None``, ``list[Database]`` -> the model."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next(filter(None, map(_model_in, get_args(annotation))), None)
