"""A fire drill: one synthetic alert per rule through the deployed Alertmanager (docs/alerts.md).

    pyinfra inventory.py drill.py

Same inventory, group_data and environment as the deploy; it reads only the channels' secrets. Each channel
and chat gets one message, marked as a drill, listing every rule; the run reports whether each channel's
service accepted it and how long delivery took, then resolves the alerts. Nothing is caused on a database.
From another project, with pgmon installed: ``from pgmon import run_pgmon_drill``.
"""

import sys
from pathlib import Path

# This checkout's tasks/, whichever folder pyinfra runs in (pyinfra puts only its working folder on the path).
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from tasks import run_pgmon_drill  # noqa: E402

run_pgmon_drill()
