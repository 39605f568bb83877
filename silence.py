"""Silence one database or server for a maintenance, list the active silences, or end one early, through the
deployed Alertmanager (docs/alerts.md, "Maintenance silences").

    pyinfra inventory.py silence.py
    pyinfra inventory.py silence.py --data pgmon_silence='{"database": "shop", "for": "2h", "reason": "VACUUM FULL"}'
    pyinfra inventory.py silence.py --data pgmon_silence='{"end": "<id>"}'

Same inventory, group_data and environment as the deploy. From another project: ``from pgmon import manage_pgmon_silences``.
"""

import sys
from pathlib import Path

# This checkout's tasks/, whichever folder pyinfra runs in (pyinfra puts only its working folder on the path).
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from tasks import manage_pgmon_silences  # noqa: E402

manage_pgmon_silences()
