"""HTTPS for Grafana: the admin password crosses the network, so Grafana serves TLS unless told not to.

Two sources of the certificate, as Grafana itself reads them (``GF_SERVER_PROTOCOL=https``,
``GF_SERVER_CERT_FILE``, ``GF_SERVER_CERT_KEY``):

- the user's own, ``pgmon_grafana_certificate = {"cert_file": ..., "key_file": ...}``: PEM files on the
  controller, checked here (a certificate, an unencrypted key that belongs to it, not expired) and written
  under ``base_dir/grafana/tls/`` as ``grafana.crt`` (0444) and ``grafana.key`` (0400, Grafana's uid 472);
- otherwise a self-signed one, made on the host by openssl the first time (the key never leaves the host),
  kept across runs as ``self-signed.crt``/``self-signed.key`` and made again 30 days before it expires.
  Its names: the inventory name, the host's names and addresses, localhost.

``pgmon_grafana_https = False`` serves plain HTTP. Verification pins the certificate pgmon knows (the user's, or
the self-signed one read back over SSH): Grafana must present exactly that one.
"""

from __future__ import annotations

import datetime
import ipaddress
import shlex
import ssl
from pathlib import Path

from pyinfra import host
from pyinfra.api import FunctionCommand, operation

from .host_facts import HostFact
from .stack_model import (
    GRAFANA_GID,
    GRAFANA_SELF_SIGNED_CERT,
    GRAFANA_SELF_SIGNED_KEY,
    GRAFANA_TLS_DIR,
    GRAFANA_UID,
    grafana_certificate_files,
)

SELF_SIGNED_DAYS = 825  # the longest a TLS server certificate may live for Apple's platforms
RENEW_SECONDS = 30 * 86400

# render/__init__.py imports these from here; they are stack_model's (to import from there).
TLS_DIR, certificate_files = GRAFANA_TLS_DIR, grafana_certificate_files


def read_certificate(cert_file: str, key_file: str) -> tuple[bytes | None, bytes | None, list[str]]:
    """The PEM certificate (chain) and key named by ``pgmon_grafana_certificate``, or the problems with them.

    The key's content is never part of a problem. Relative paths are from the folder pyinfra runs in.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    where = "pgmon_grafana_certificate"
    problems: list[str] = []
    contents = {}
    for field, path in (("cert_file", cert_file), ("key_file", key_file)):
        try:
            contents[field] = Path(path).expanduser().read_bytes()
        except OSError as error:
            problems.append(
                f"{where}.{field}: cannot read {path!r} on this machine ({error.strerror or error})"
            )
    if problems:
        return None, None, problems
    try:
        chain = x509.load_pem_x509_certificates(contents["cert_file"])
    except ValueError:
        return (
            None,
            None,
            [
                f"{where}.cert_file: {cert_file!r} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
            ],
        )
    try:
        key = serialization.load_pem_private_key(contents["key_file"], password=None)
    except TypeError:
        return (
            None,
            None,
            [
                f"{where}.key_file: {key_file!r} is encrypted; Grafana reads an unencrypted key "
                "(openssl pkey -in KEY -out KEY.plain, then keep that file private)"
            ],
        )
    except ValueError:
        return None, None, [f"{where}.key_file: {key_file!r} holds no PEM private key"]
    leaf = chain[0]
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(
        serialization.Encoding.PEM, public
    ) != leaf.public_key().public_bytes(serialization.Encoding.PEM, public):
        problems.append(
            f"{where}: the key in {key_file!r} does not belong to the first certificate in "
            f"{cert_file!r} (the server's own certificate comes first, then its chain)"
        )
    if leaf.not_valid_after_utc <= datetime.datetime.now(datetime.UTC):
        problems.append(
            f"{where}.cert_file: the certificate in {cert_file!r} expired on "
            f"{leaf.not_valid_after_utc:%Y-%m-%d}; give a current one"
        )
    if problems:
        return None, None, problems
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
    return pem, contents["key_file"], []


def first_certificate(pem: bytes) -> bytes:
    """The DER of the first certificate of a PEM chain: the one the server presents."""
    text = pem.decode("ascii", errors="replace")
    begin = text.index("-----BEGIN CERTIFICATE-----")
    end = text.index("-----END CERTIFICATE-----", begin) + len("-----END CERTIFICATE-----")
    return ssl.PEM_cert_to_DER_cert(text[begin:end])


def pinned_context(pem: bytes) -> ssl.SSLContext:
    """A client context that accepts exactly the first certificate of ``pem`` (a self-signed one, or the leaf of a
    CA-issued chain): it is the only trust anchor, and names are not checked (verification reaches Grafana on
    the host's loopback, through SSH, not by its public name)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # a leaf may be its own anchor
    context.load_verify_locations(cadata=ssl.DER_cert_to_PEM_cert(first_certificate(pem)))
    return context


def self_signed_names(inventory_name: str) -> tuple[str, str]:
    """(subject common name, shell words that print the subjectAltName list) for the host being deployed."""
    try:
        ipaddress.ip_address(inventory_name)
        given = f"IP:{inventory_name}"
    except ValueError:
        given = f"DNS:{inventory_name}"
    return inventory_name, given


def make_certificate_script(base_dir: str, inventory_name: str) -> str:
    """openssl on the host: a P-256 key and a self-signed certificate for every name the host answers to, written
    beside each other and renamed into place (a run cut short leaves the old pair or none, never half)."""
    directory = shlex.quote(f"{base_dir}/{GRAFANA_TLS_DIR}")
    cn, given = self_signed_names(inventory_name)
    names = " ".join(
        [
            shlex.quote(given),
            "DNS:localhost",
            "IP:127.0.0.1",
            "IP:::1",
            '$(for n in $(hostname) $(hostname -f 2>/dev/null); do echo "DNS:$n"; done)',
            '$(for a in $(hostname -I 2>/dev/null); do echo "IP:$a"; done)',
        ]
    )
    return "\n".join(
        [
            "set -e",
            "command -v openssl >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q openssl >/dev/null",
            f"cd {directory}",
            "umask 077",
            # Each name once, in the order given: the inventory name first.
            f"san=$(for n in {names}; do echo \"$n\"; done | awk '!seen[$0]++' | paste -sd, -)",
            f"openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days {SELF_SIGNED_DAYS} "
            f'-subj {shlex.quote("/CN=" + cn[:64] + "/O=pgmon self-signed")} -addext "subjectAltName=$san" '
            "-addext extendedKeyUsage=serverAuth "
            f"-keyout {GRAFANA_SELF_SIGNED_KEY}.new -out {GRAFANA_SELF_SIGNED_CERT}.new 2>/dev/null",
            f"chown {GRAFANA_UID}:{GRAFANA_GID} {GRAFANA_SELF_SIGNED_KEY}.new {GRAFANA_SELF_SIGNED_CERT}.new",
            f"chmod 0400 {GRAFANA_SELF_SIGNED_KEY}.new && chmod 0444 {GRAFANA_SELF_SIGNED_CERT}.new",
            f"mv -f {GRAFANA_SELF_SIGNED_KEY}.new {GRAFANA_SELF_SIGNED_KEY} && mv -f {GRAFANA_SELF_SIGNED_CERT}.new {GRAFANA_SELF_SIGNED_CERT}",
        ]
    )


def renewal_check_command(base_dir: str) -> str:
    """``grafana-certificate renew`` when the self-signed certificate ends within 30 days (nothing when there
    is none, or no openssl to tell)."""
    cert = shlex.quote(f"{base_dir}/{GRAFANA_TLS_DIR}/{GRAFANA_SELF_SIGNED_CERT}")
    return (
        f"if [ -f {cert} ] && command -v openssl >/dev/null 2>&1 && "
        f"! openssl x509 -checkend {RENEW_SECONDS} -noout -in {cert} >/dev/null 2>&1; "
        "then echo 'grafana-certificate renew'; fi"
    )


# HostState.grafana_certificate_renew
CERTIFICATE_RENEWAL = HostFact(
    "grafana_certificate_renew",
    ("grafana-certificate",),
    lambda base_dir, project: renewal_check_command(base_dir),
    lambda lines: any(rest == "renew" for _, rest in lines),
)


def needs_self_signed(entries: dict, renew: bool) -> bool:
    return renew or not all(
        f"{GRAFANA_TLS_DIR}/{name}" in entries
        for name in (GRAFANA_SELF_SIGNED_CERT, GRAFANA_SELF_SIGNED_KEY)
    )


@operation()
def self_signed_certificate(
    base_dir: str, inventory_name: str, make: bool, claim: FunctionCommand | None = None
):
    """
    Make Grafana's self-signed certificate on the host when it has none (or it ends within 30 days).

    + base_dir: the stack's directory on the host
    + inventory_name: the name the host is deployed by, first in the certificate's names
    + make: whether one is needed (``needs_self_signed`` on the host state)
    + claim: run before any change (``host_lock.claim_host``)
    """
    if not make:
        return
    if not host.state.is_executing:
        host.log(
            f"pgmon: will make Grafana's self-signed certificate ({GRAFANA_TLS_DIR}/{GRAFANA_SELF_SIGNED_CERT})"
        )
    if claim is not None:
        yield claim
    yield make_certificate_script(base_dir, inventory_name)
