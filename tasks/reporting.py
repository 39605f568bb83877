"""How a pgmon operation fails the run with lines the user reads (verification, the test alert)."""

from __future__ import annotations

from pyinfra import logger
from pyinfra.api import FunctionCommand


def log_failure(host, lines: list[str]) -> bool:
    """Print ``lines`` as errors for ``host``; returns False, the result a failing FunctionCommand gives."""
    for line in lines:
        logger.error(f"{host.print_prefix}pgmon: {line}")
    return False


def failure(lines: list[str]) -> FunctionCommand:
    """A command for an operation to yield: it prints ``lines`` as errors and fails the host."""
    return FunctionCommand(_fail_host, (lines,), {})


def _fail_host(state, host, lines: list[str]) -> bool:
    return log_failure(host, lines)
