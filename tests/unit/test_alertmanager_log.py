"""The Telegram bot token never reaches Alertmanager's log: Alertmanager (to 0.34.0 at least) logs a failed
Telegram request's error with the URL, whose path holds the token. The compose file's entrypoint is run here
with busybox's sh and awk (what the official image has) around a stand-in alertmanager that logs such errors."""

import shutil
import signal
import subprocess
import time

import pytest
import yaml

from tasks.render.compose import compose_services

from .conftest import ENVIRON, rendered

TOKEN = ENVIRON["TG_TOKEN"]
# What Alertmanager 0.34 logs (logfmt, to stderr) when Telegram cannot be reached, on SIGHUP, on SIGTERM.
STAND_IN = f"""#!/bin/sh
trap 'echo "msg=\\"Received shutdown signal\\" token=/bot{TOKEN}/"; exit 0' TERM
trap 'echo "msg=\\"Reloading configuration file\\""; echo > "$READY.reloaded"' HUP
echo "level=WARN msg=\\"Notify attempt failed, will retry later\\" err=\\"telebot: Post \\\\\\"http://127.0.0.1:9/bot{TOKEN}/sendMessage\\\\\\": dial tcp 127.0.0.1:9: connect: connection refused\\"" >&2
echo "args: $*"
echo ready > "$READY"
while :; do sleep 0.05; done
"""


def test_alertmanager_runs_under_the_filter_with_its_own_arguments(settings):
    service = compose_services(settings)["alertmanager"]
    assert service["entrypoint"][:2] == ["/bin/sh", "-c"]
    assert '/bin/alertmanager "$@"' in service["entrypoint"][2]
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in service["command"]
    # Compose would interpolate a bare $: the file holds $$.
    compose = rendered(settings, "docker-compose.yml").content.decode()
    assert yaml.safe_load(compose)["services"]["alertmanager"]["entrypoint"][2].count(
        '"$$log"'
    ) == service["entrypoint"][2].count('"$log"')


@pytest.mark.skipif(not shutil.which("busybox"), reason="needs busybox (Debian's busybox-static)")
def test_the_token_is_replaced_and_reload_and_stop_still_reach_alertmanager(settings, tmp_path):
    stand_in = tmp_path / "alertmanager"
    stand_in.write_text(STAND_IN)
    stand_in.chmod(0o755)
    entrypoint = compose_services(settings)["alertmanager"]["entrypoint"]
    script = entrypoint[2].replace("/bin/alertmanager", str(stand_in))
    ready = tmp_path / "ready"
    bin_dir = tmp_path / "bin"  # busybox's applets only, as in the image
    bin_dir.mkdir()
    for applet in ("sh", "awk", "mkfifo", "mktemp", "rm", "sleep", "kill", "cat"):
        (bin_dir / applet).symlink_to(shutil.which("busybox"))
    run = subprocess.Popen(
        [str(bin_dir / "sh"), "-c", script, entrypoint[3], "--config.file=x"],
        env={"PATH": str(bin_dir), "READY": str(ready)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wait_for(ready)
    run.send_signal(signal.SIGHUP)  # the deploy's reload: docker kill -s HUP
    wait_for(tmp_path / "ready.reloaded")
    run.send_signal(signal.SIGTERM)
    out, _ = run.communicate(timeout=10)
    assert run.returncode == 0, out
    assert TOKEN not in out
    assert 'Post \\"http://127.0.0.1:9/bot<redacted>/sendMessage\\"' in out
    assert "args: --config.file=x" in out and "Reloading configuration file" in out
    assert "Received shutdown signal" in out  # the last line kept


def wait_for(path, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.05)
