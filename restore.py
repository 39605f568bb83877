"""Put an archive backup.py wrote onto a host without pgmon's data (Docker installed first if it has none); then
deploy to start the stack on it (README, "Moving to a new server").

    pyinfra inventory.py restore.py --data pgmon_restore_from=pgmon-backups/pgmon-<host>-<UTC time>.tar.gz
    pyinfra inventory.py deploy.py

Same group_data as the deploy; reads no secret. From another project: ``from pgmon import restore_pgmon``.
"""

import sys
from pathlib import Path

# This checkout's tasks/, whichever folder pyinfra runs in (pyinfra puts only its working folder on the path).
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from tasks import restore_pgmon  # noqa: E402

restore_pgmon()
