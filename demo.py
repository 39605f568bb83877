"""The pgmon demo: the real stack, a PostgreSQL with a steady workload, and a local alert sink, with nothing
to configure. Run: pyinfra -y inventory.py demo.py

    pyinfra -y inventory.py demo.py                                    # deploy; prints Grafana's address and login
    pyinfra -y inventory.py demo.py --data pgmon_demo_incident=start   # stop the demo database: the alert reaches the sink
    pyinfra -y inventory.py demo.py --data pgmon_demo_incident=end     # start it again: the alert resolves
    pyinfra -y inventory.py uninstall.py                               # removes pgmon, the demo included

It is a pgmon project of its own, beside any real deploy on the same host, which it neither touches nor
depends on:

    Compose projects   pgmon-demo (the stack), pgmon-demo-extras (database, workload, alert sink)
    folders            /opt/pgmon-demo, /opt/pgmon-demo-extras (its secrets: secrets/, root only)
    Grafana            port 3030 of every address, HTTPS with a self-signed certificate, user admin
    Prometheus         127.0.0.1:9190        Alertmanager   127.0.0.1:9193
    alert sink page    127.0.0.1:3031 (Discord's and Telegram's formats; nothing leaves the host)

A real deploy uses the project pgmon, /opt/pgmon and the ports 9090, 9093 and 3000. Where no registry is
reachable, point ``pgmon_images`` and ``pgmon_demo_images`` (``{"postgres": ..., "busybox": ...}``) at a
mirror. The steps are in tasks/demo.py (``deploy_demo``).
"""

import sys
from pathlib import Path

# This checkout's tasks/, whichever folder pyinfra runs in (pyinfra puts only its working folder on the path).
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from tasks.demo import deploy_demo  # noqa: E402

deploy_demo()
