"""How pgmon prints what it read from the host, and how an operation fails the run with lines the user
reads (verification, the test alert)."""

from __future__ import annotations

import unicodedata

from pyinfra import logger
from pyinfra.api import FunctionCommand


def printable(text: str) -> str:
    """``text`` with its control and format characters written as escapes (``\\x1b``): text from the host
    (a silence's comment, an answer, a log line) cannot move the cursor, retitle or clear the terminal,
    or reverse what follows it."""
    return "".join(
        char.encode("unicode_escape").decode()
        if unicodedata.category(char) in ("Cc", "Cf")
        else char
        for char in text
    )


def log_lines(host, lines: list[str]) -> None:
    """Print ``lines`` for ``host`` as pgmon's information, made printable."""
    for line in lines:
        host.log(f"pgmon: {printable(line)}")


def log_failure(host, lines: list[str]) -> bool:
    """Print ``lines`` as errors for ``host``, made printable; returns False, the result a failing
    FunctionCommand gives."""
    for line in lines:
        logger.error(f"{host.print_prefix}pgmon: {printable(line)}")
    return False


def failure(lines: list[str]) -> FunctionCommand:
    """A command for an operation to yield: it prints ``lines`` as errors and fails the host."""
    return FunctionCommand(_fail_host, (lines,), {})


def _fail_host(state, host, lines: list[str]) -> bool:
    return log_failure(host, lines)
