"""`cellplane cert`: client certificates (mutual TLS) for the caller.

Attached to the root app by `cellplane.cli.main`; every request goes through the SDK
(`Client.request_certificate`, ...). The private key is made here and never leaves this
machine; only its CSR is sent.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cellplane.cli import output

if TYPE_CHECKING:
    from cellplane.client import Client
    from cellplane.client.models import IssuedCertificate, Whoami

__all__ = ["app", "issue_user_certificate", "new_key_and_csr", "write_private"]

app = typer.Typer(help="Client certificates (mutual TLS) for yourself.", no_args_is_help=True)


def write_private(path: Path, data: bytes, mode: int) -> None:
    """Write `data` to `path` atomically, created with `mode` before anything is written."""
    import os
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def new_key_and_csr(subject: str) -> tuple[bytes, str]:
    """A new EC P-256 key (PKCS#8 PEM) and a CSR for `subject` (PEM): the key never leaves
    this machine, only the CSR is sent."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, csr.public_bytes(serialization.Encoding.PEM).decode("ascii")


def issue_user_certificate(
    client: Client, days: int | None
) -> tuple[Whoami, bytes, IssuedCertificate]:
    """The caller (a user: anything else is refused), a new private key, and the certificate the
    CA issued for it (`cert request`, `endpoint env`)."""
    me = client.whoami()
    if me.get("kind") != "user":
        output.fail("client certificates are issued to users only", f"you are a {me.get('kind')}")
    key_pem, csr_pem = new_key_and_csr(str(me["subject"]))
    return me, key_pem, client.request_certificate(csr_pem, ttl_days=days)


@app.command("request")
def cert_request(
    out_dir: Annotated[
        Path, typer.Option("--out-dir", help="Where to write key.pem, cert.pem and chain.pem.")
    ] = Path("."),
    days: Annotated[int, typer.Option("--days", help="Validity in days.", min=1, max=365)] = 30,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite files from an earlier request.")
    ] = False,
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Get a client certificate for yourself: a new EC P-256 key (never leaves this machine)
    and a certificate for it, issued by your tenant's CA."""
    from cellplane.client import config

    files = {
        "key": out_dir / "key.pem",
        "cert": out_dir / "cert.pem",
        "chain": out_dir / "chain.pem",
    }
    existing = [str(p) for p in files.values() if p.exists()]
    if existing and not force:
        output.fail("the files exist already", f"{', '.join(existing)}; pass --force to replace")
    with output.session() as client:
        me, key_pem, issued = issue_user_certificate(client, days)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_private(files["key"], key_pem, 0o600)
        write_private(files["cert"], str(issued.get("certificate", "")).encode(), 0o644)
        write_private(files["chain"], str(issued.get("chain", "")).encode(), 0o644)
    except OSError as exc:
        output.fail("cannot write the certificate files", str(exc))
    record = {k: v for k, v in issued.items() if k not in ("certificate", "chain")}
    paths = {name: str(path) for name, path in files.items()}
    if output.is_json(out):
        output.print_json({**record, "files": paths})
        return
    try:
        conf = config.load_config()
        server, ca = conf.server or "https://SERVER", conf.ca_cert
    except config.ConfigError:
        server, ca = "https://SERVER", None
    output.say(
        f"certificate {record.get('serial')} for {output.escape(str(me.get('name')))} "
        f"({record.get('subject')}), valid until {record.get('not_after')}"
    )
    output.say(f"  key (keep it private): {output.escape(paths['key'])}")
    output.say(f"  certificate:           {output.escape(paths['cert'])}")
    output.say(f"  chain (present this):  {output.escape(paths['chain'])}")
    cacert = f" --cacert {ca}" if ca else ""
    output.say("use it with curl:")
    output.say(
        output.escape(
            f"  curl --cert {paths['chain']} --key {paths['key']}{cacert} {server}/v1/whoami"
        )
    )
    output.say("use it with docker (a registry that asks for client certificates):")
    output.say(
        output.escape(
            f"  cp {paths['chain']} /etc/docker/certs.d/<registry:port>/client.cert && "
            f"cp {paths['key']} /etc/docker/certs.d/<registry:port>/client.key"
        )
    )


@app.command("ls")
def cert_ls(
    quiet: output.QuietOpt = False, out: output.OutputOpt = output.OutputFormat.table
) -> None:
    """List your certificates (a tenant admin sees the tenant's)."""
    with output.session() as client:
        certs = client.list_certificates()
    output.print_list(
        out,
        certs,
        quiet,
        ["SERIAL", "SUBJECT", "PROFILE", "OWNER", "NOT AFTER", "REVOKED"],
        (
            [
                c.get("serial"),
                c.get("subject"),
                c.get("profile"),
                c.get("owner"),
                c.get("not_after"),
                c.get("revoked_at"),
            ]
            for c in certs
        ),
        key="serial",
    )


@app.command("revoke")
def cert_revoke(
    serial: Annotated[str, typer.Argument(help="Serial number (hex, as cert ls shows it).")],
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Revoke a certificate (it is listed in the CRL from now on)."""
    with output.session() as client:
        data = client.revoke_certificate(serial)
    if output.is_json(out):
        output.print_json(data)
        return
    output.say(f"certificate {data.get('serial')} revoked at {data.get('revoked_at')}")
