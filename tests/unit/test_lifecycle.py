"""HTTPS for Grafana, uninstall, backup and restore: settings, rendering, plans and the commands, without a host.
The end-to-end proof is tests/e2e/test_bare_host.py."""

import datetime
import os
import socket
import ssl
import subprocess
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from tasks.backup import backup_file_name, backup_script, restore_script
from tasks.deploy import load_config
from tasks.grafana_tls import (
    first_certificate,
    make_certificate_script,
    needs_self_signed,
    pinned_context,
    read_certificate,
)
from tasks.host_state import Entry, HostState, parse_state
from tasks.http_tunnel import _TunnelledConnection
from tasks.render import render_stack
from tasks.render.compose import compose_services
from tasks.settings import DeployError, build_settings
from tasks.stack_containers import action_command, after_file_changes
from tasks.uninstall import pgmon_paths, remove_files_script

from .conftest import ENVIRON, group_data


def openssl(directory: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, a server certificate it signed (with its chain file), another self-signed pair, an encrypted key."""
    d = tmp_path_factory.mktemp("pki")
    openssl(
        d,
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "5",
        "-subj",
        "/CN=CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    )
    openssl(
        d,
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-subj",
        "/CN=server",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    )
    (d / "ext").write_text("subjectAltName=DNS:grafana.example.org,IP:127.0.0.1\n")
    openssl(
        d,
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "5",
        "-extfile",
        "ext",
        "-out",
        "server.crt",
    )
    (d / "chain.crt").write_bytes((d / "server.crt").read_bytes() + (d / "ca.crt").read_bytes())
    openssl(
        d,
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "5",
        "-subj",
        "/CN=other",
        "-keyout",
        "other.key",
        "-out",
        "other.crt",
    )
    openssl(
        d,
        "pkey",
        "-in",
        "server.key",
        "-aes256",
        "-passout",
        "pass:secret",
        "-out",
        "encrypted.key",
    )
    return d


# ---------------------------------------------------------------- settings
def test_defaults_https_auto_docker_and_data_kept_on_uninstall(settings):
    cfg = settings.config
    assert (cfg.grafana_https, cfg.grafana_certificate, cfg.docker_install) == (True, None, "auto")
    assert (cfg.uninstall_delete_data, cfg.backup_dir, cfg.restore_from) == (
        False,
        "~/pgmon-backups",
        None,
    )


def test_the_users_certificate_is_read_on_the_controller(pki):
    settings = build_settings(
        group_data(
            pgmon_grafana_certificate={
                "cert_file": str(pki / "chain.crt"),
                "key_file": str(pki / "server.key"),
            }
        ),
        ENVIRON,
    )
    assert (
        settings.grafana_tls_certificate.count(b"BEGIN CERTIFICATE") == 2
    )  # the chain follows the server's
    assert settings.grafana_tls_key.get_secret_value() == (pki / "server.key").read_text()
    assert "PRIVATE KEY" not in repr(settings)  # a SecretStr: never in a repr or a log


@pytest.mark.parametrize(
    "cert, key, problem",
    [
        ("missing.crt", "server.key", "pgmon_grafana_certificate.cert_file: cannot read"),
        ("server.key", "server.key", "holds no PEM certificate"),
        ("server.crt", "server.crt", "holds no PEM private key"),
        ("server.crt", "encrypted.key", "is encrypted; Grafana reads an unencrypted key"),
        ("server.crt", "other.key", "does not belong to the first certificate"),
        ("ca.crt", "server.key", "does not belong to the first certificate"),
    ],
)
def test_an_unusable_certificate_is_refused_naming_the_field_never_the_key(pki, cert, key, problem):
    with pytest.raises(DeployError) as refused:
        build_settings(
            group_data(
                pgmon_grafana_certificate={"cert_file": str(pki / cert), "key_file": str(pki / key)}
            ),
            ENVIRON,
        )
    assert problem in str(refused.value)
    secret = [
        line
        for line in (pki / "server.key").read_text().splitlines()
        if not line.startswith("-----")
    ]
    assert not any(line in str(refused.value) for line in secret)


def test_an_expired_certificate_is_refused(pki, tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    key = serialization.load_pem_private_key((pki / "other.key").read_bytes(), password=None)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "old")])
    old = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(datetime.datetime(2020, 1, 1))
        .not_valid_after(datetime.datetime(2020, 1, 2))
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "old.crt").write_bytes(old.public_bytes(serialization.Encoding.PEM))
    _, _, problems = read_certificate(str(tmp_path / "old.crt"), str(pki / "other.key"))
    assert problems == [
        f"pgmon_grafana_certificate.cert_file: the certificate in {str(tmp_path / 'old.crt')!r} "
        "expired on 2020-01-02; give a current one"
    ]


def test_a_certificate_with_plain_http_is_refused(pki):
    with pytest.raises(
        DeployError, match="grafana_certificate: is set while pgmon_grafana_https is False"
    ):
        build_settings(
            group_data(
                pgmon_grafana_https=False,
                pgmon_grafana_certificate={
                    "cert_file": str(pki / "server.crt"),
                    "key_file": str(pki / "server.key"),
                },
            ),
            ENVIRON,
        )


def test_commands_without_secrets_validate_the_settings_but_read_no_environment():
    host = SimpleNamespace(
        data=SimpleNamespace(dict=lambda: group_data(pgmon_uninstall_delete_data=True))
    )
    assert (
        load_config(host).config.uninstall_delete_data is True
    )  # ENVIRON not given: no secret read
    typo = SimpleNamespace(data=SimpleNamespace(dict=lambda: {"pgmon_uninstall_delete_dat": True}))
    with pytest.raises(DeployError, match="did you mean pgmon_uninstall_delete_data"):
        load_config(typo)


# ---------------------------------------------------------------- rendering
def test_grafana_serves_https_by_default_with_the_self_signed_certificate(settings, dashboard_9628):
    grafana = compose_services(settings)["grafana"]
    assert {k: v for k, v in grafana["environment"].items() if k.startswith("GF_SERVER_")} == {
        "GF_SERVER_PROTOCOL": "https",
        "GF_SERVER_CERT_FILE": "/etc/grafana/tls/self-signed.crt",
        "GF_SERVER_CERT_KEY": "/etc/grafana/tls/self-signed.key",
    }
    # The session cookie never travels over plain HTTP, even if the browser is steered there.
    assert grafana["environment"]["GF_SECURITY_COOKIE_SECURE"] == "true"
    assert grafana["environment"]["GF_SECURITY_COOKIE_SAMESITE"] == "lax"
    assert "/opt/pgmon/grafana/tls:/etc/grafana/tls:ro" in grafana["volumes"]
    assert grafana["healthcheck"]["test"] == [
        "CMD",
        "wget",
        "-q",
        "--no-check-certificate",
        "-O",
        "/dev/null",
        "https://127.0.0.1:3000/api/health",
    ]
    stack = render_stack(settings, dashboard_9628)
    tls = [d for d in stack.directories if d.path == "grafana/tls"]
    assert [(d.mode, d.uid, d.gid) for d in tls] == [(0o500, 472, 0)]
    assert not [
        f for f in stack.files if f.path.startswith("grafana/tls/")
    ]  # made on the host, not rendered


def test_the_users_certificate_is_written_for_grafana_alone(pki, dashboard_9628):
    settings = build_settings(
        group_data(
            pgmon_grafana_certificate={
                "cert_file": str(pki / "chain.crt"),
                "key_file": str(pki / "server.key"),
            }
        ),
        ENVIRON,
    )
    files = {
        f.path: f
        for f in render_stack(settings, dashboard_9628).files
        if f.path.startswith("grafana/tls/")
    }
    cert, key = files["grafana/tls/grafana.crt"], files["grafana/tls/grafana.key"]
    assert (cert.mode, cert.uid, cert.secret, key.mode, key.uid, key.gid, key.secret) == (
        0o444,
        472,
        False,
        0o400,
        472,
        0,
        True,
    )
    assert cert.on_change == key.on_change == ("restart:grafana",)
    assert (
        compose_services(settings)["grafana"]["environment"]["GF_SERVER_CERT_KEY"]
        == "/etc/grafana/tls/grafana.key"
    )
    compose = next(
        f for f in render_stack(settings, dashboard_9628).files if f.path == "docker-compose.yml"
    )
    assert b"PRIVATE KEY" not in compose.content


def test_plain_http_when_asked(dashboard_9628):
    settings = build_settings(group_data(pgmon_grafana_https=False), ENVIRON)
    grafana = compose_services(settings)["grafana"]
    assert "GF_SERVER_PROTOCOL" not in grafana["environment"] and not any(
        "tls" in v for v in grafana["volumes"]
    )
    # A Secure cookie is never sent over plain HTTP: the login would not hold.
    assert "GF_SECURITY_COOKIE_SECURE" not in grafana["environment"]
    assert grafana["healthcheck"]["test"][-1] == "http://127.0.0.1:3000/api/health"
    assert "grafana/tls" not in {d.path for d in render_stack(settings, dashboard_9628).directories}


def test_prometheus_has_the_snapshot_api_on_the_hosts_loopback_only(settings):
    prometheus = compose_services(settings)["prometheus"]
    assert "--web.enable-admin-api" in prometheus["command"]
    assert prometheus["ports"] == ["127.0.0.1:9090:9090"]


# ---------------------------------------------------------------- the self-signed certificate
def test_a_self_signed_certificate_is_made_when_missing_or_ending_and_grafana_restarted(
    settings, dashboard_9628
):
    stack = render_stack(settings, dashboard_9628)
    present = {
        "grafana/tls/self-signed.crt": Entry("f", 0o444, 472, 0),
        "grafana/tls/self-signed.key": Entry("f", 0o400, 472, 0),
    }
    assert (
        needs_self_signed({}, False)
        and not needs_self_signed(present, False)
        and needs_self_signed(present, True)
    )
    assert parse_state(["grafana-certificate renew"]).grafana_certificate_renew
    entries = {d.path: Entry("d", d.mode, d.uid, d.gid) for d in stack.directories}
    entries.update(
        {f.path: Entry("f", f.mode, f.uid, f.gid, f.sha256) for f in stack.files} | present
    )
    assert after_file_changes(settings, HostState("26", "2", True, entries=entries), stack) == ()
    renew = HostState("26", "2", True, entries=entries, grafana_certificate_renew=True)
    assert after_file_changes(settings, renew, stack) == ("restart:grafana",)


@pytest.mark.skipif(os.geteuid() != 0, reason="the script gives the files to Grafana's uid (chown)")
def test_the_self_signed_certificate_names_the_host_and_only_grafana_reads_its_key(tmp_path):
    (tmp_path / "grafana" / "tls").mkdir(parents=True)
    subprocess.run(
        ["sh", "-c", make_certificate_script(str(tmp_path), "monitor.example.com")], check=True
    )
    cert, key = tmp_path / "grafana/tls/self-signed.crt", tmp_path / "grafana/tls/self-signed.key"
    assert (oct(cert.stat().st_mode & 0o777), oct(key.stat().st_mode & 0o777)) == ("0o444", "0o400")
    assert key.stat().st_uid == cert.stat().st_uid == 472
    names = subprocess.run(
        ["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", str(cert)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "DNS:monitor.example.com, DNS:localhost, IP Address:127.0.0.1" in names
    assert not list(tmp_path.glob("grafana/tls/*.new"))


def test_the_password_reset_asks_grafana_over_https(settings):
    command = action_command("reset-password:grafana", "pgmon", "/opt/pgmon", "https")
    assert (
        "wget -q --no-check-certificate -O /dev/null https://127.0.0.1:3000/api/health" in command
    )


# ---------------------------------------------------------------- verification pins the certificate
def tls_server(cert: Path, key: Path):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            try:
                with context.wrap_socket(connection, server_side=True) as tls:
                    tls.recv(65536)
                    tls.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                    )
            except (OSError, ssl.SSLError):
                pass

    threading.Thread(target=serve, daemon=True).start()
    return listener


@pytest.mark.parametrize("served, expected", [("chain.crt", 200), ("other.crt", None)])
def test_verification_accepts_exactly_the_certificate_pgmon_knows(pki, served, expected):
    """Pinned to the server certificate of chain.crt (a CA-issued one: the leaf is its own anchor here)."""
    key = {"chain.crt": "server.key", "other.crt": "other.key"}[served]
    listener = tls_server(pki / served, pki / key)
    pem = (pki / "chain.crt").read_bytes()
    connection = _TunnelledConnection(
        lambda: socket.create_connection(listener.getsockname(), timeout=5),
        5,
        pinned_context(pem),
        first_certificate(pem),
    )
    try:
        if expected is None:
            with pytest.raises(ssl.SSLError):
                connection.request("GET", "/")
        else:
            connection.request("GET", "/")
            response = connection.getresponse()
            assert (response.status, response.read()) == (expected, b"ok")
    finally:
        connection.close()
        listener.close()


# ---------------------------------------------------------------- uninstall, backup, restore
def test_uninstall_removes_what_pgmon_wrote_and_keeps_the_rest(tmp_path, settings, dashboard_9628):
    base = tmp_path / "pgmon"
    stack = render_stack(settings, dashboard_9628)
    for d in stack.directories:
        (base / d.path).mkdir(parents=True, exist_ok=True)
    for f in stack.files:
        (base / f.path).write_bytes(f.content)
    (base / "grafana/tls/self-signed.crt").write_text("made on the host")
    (base / "notes.txt").write_text("an admin's")
    (base / "prometheus/rules/mine.yml").write_text("an admin's rules")
    entries = {}
    for path in [base, *base.rglob("*")]:
        relative = "." if path == base else str(path.relative_to(base))
        entries[relative] = Entry("d" if path.is_dir() else "f", 0o755, 0, 0)
    written = frozenset(
        (base / ".pgmon-manifest").read_text().split()
    )  # the manifest the deploy wrote
    paths = pgmon_paths(HostState("26", "2", True, entries=entries, written=written))
    assert "notes.txt" not in paths and "grafana/tls/self-signed.crt" in paths
    subprocess.run(["sh", "-c", remove_files_script(str(base), paths, entries)], check=True)
    left = sorted(str(p.relative_to(base)) for p in base.rglob("*"))
    assert left == ["notes.txt", "prometheus", "prometheus/rules", "prometheus/rules/mine.yml"]
    # Once nothing else is there, base_dir goes too.
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / ".pgmon-manifest").write_text("")
    subprocess.run(
        [
            "sh",
            "-c",
            remove_files_script(
                str(tmp_path / "bare"),
                [".pgmon-manifest"],
                {".pgmon-manifest": Entry("f", 0o644, 0, 0)},
            ),
        ],
        check=True,
    )
    assert not (tmp_path / "bare").exists()


def test_backup_and_restore_scripts_are_valid_shell_for_odd_project_names():
    for script in (
        backup_script("pgmon-x_1", {"format": "pgmon-backup 1", "host": "it's"}),
        restore_script("pgmon-x_1"),
    ):
        subprocess.run(["sh", "-n", "-c", script], check=True)
    assert "pgmon-x_1_prometheus-data" in restore_script("pgmon-x_1")
    assert (
        backup_file_name("monitor.example.com:22", datetime.datetime(2026, 1, 2, 3, 4, 5))
        == "pgmon-monitor.example.com_22-20260102T030405Z.tar.gz"
    )


def test_restore_refuses_a_host_that_has_the_volumes_and_changes_nothing(tmp_path):
    docker = tmp_path / "docker"
    docker.write_text(
        '#!/bin/sh\necho "$@" >> "$LOG"\n[ "$1 $2" = "volume inspect" ] && [ "$3" = "p_grafana-data" ]\n'
    )
    docker.chmod(0o755)
    log = tmp_path / "log"
    result = subprocess.run(
        ["sh", "-c", restore_script("p")],
        env={"PATH": f"{tmp_path}:/usr/bin:/bin", "LOG": str(log)},
        input=b"",
        capture_output=True,
    )
    assert result.returncode == 3 and b"has the volume p_grafana-data already" in result.stderr
    assert "volume create" not in log.read_text()
