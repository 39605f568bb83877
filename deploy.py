"""pgmon: PostgreSQL monitoring on the processing host. Run: pyinfra inventory.py deploy.py

The steps are in tasks/deploy.py (``deploy_pgmon``): every setting and secret checked before the host is
touched, one round trip to read the host, then Docker, files, containers and verification. Another
pyinfra project makes the same call with pgmon installed: ``from pgmon import deploy_pgmon`` (README).
"""

import sys
from pathlib import Path

# This checkout's tasks/, whichever folder pyinfra runs in (pyinfra puts only its working folder on the path).
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from tasks import deploy_pgmon  # noqa: E402

deploy_pgmon()
