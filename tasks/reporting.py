"""How a pgmon operation fails the run with lines the user reads (verification, the test alert)."""

from __future__ import annotations

from pyinfra import logger
from pyinfra.api import FunctionCommand


def _log_and_fail(state, host, lines: list[str]) -> bool:
    for line in lines:
        logger.error(f"{host.print_prefix}pgmon: {line}")
    return False


def failure(lines: list[str]) -> FunctionCommand:
    """A command for an operation to yield: it prints ``lines`` as errors and fails the host."""
    return FunctionCommand(_log_and_fail, (lines,), {})
