"""Send a test alert to every configured channel through the deployed Alertmanager (docs/alerts.md).

    pyinfra inventory.py send_test_alert.py

Same inventory, group_data and environment as the deploy. It reaches the real Discord and Telegram.
"""

from pyinfra import host

from tasks import load_settings
from tasks.alert_delivery import send_test_alert

send_test_alert(load_settings(host))
