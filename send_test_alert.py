"""Send a test alert to every configured channel through the deployed Alertmanager (docs/alerts.md).

    pyinfra inventory.py send_test_alert.py

Same inventory, group_data and environment as the deploy. It reaches the real Discord and Telegram.
From another project, with pgmon installed: ``from pgmon import send_pgmon_test_alert``.
"""

import sys
from pathlib import Path

# This checkout's tasks/, whichever folder pyinfra runs in (pyinfra puts only its working folder on the path).
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from tasks import send_pgmon_test_alert  # noqa: E402

send_pgmon_test_alert()
