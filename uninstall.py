"""Remove pgmon from the processing host: its containers, networks and files; its data volumes stay unless asked
(README, "Removing pgmon"). The demo (demo.py), where it is deployed, goes too, its data included.

    pyinfra inventory.py uninstall.py
    pyinfra inventory.py uninstall.py --data pgmon_uninstall_delete_data=true   # Prometheus's history and Grafana's data too

Same inventory and group_data as the deploy; reads no secret. From another project: ``from pgmon import uninstall_pgmon``.
"""

import sys
from pathlib import Path

# This checkout's tasks/, whichever folder pyinfra runs in (pyinfra puts only its working folder on the path).
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from tasks import uninstall_pgmon  # noqa: E402
from tasks.demo import uninstall_demo  # noqa: E402

# The real stack first: a run holds one lock per host, the first it claims (tasks/host_lock.py), and the real
# stack's is the one another run may be waiting on.
uninstall_pgmon()
uninstall_demo()
