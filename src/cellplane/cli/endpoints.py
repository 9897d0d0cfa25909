"""`cellplane endpoint create|ls|rm|env`: a project's Docker-compatible endpoint.

Registered on the root app by `cellplane.cli.main`; every request goes through the SDK.
`env` prints what the docker CLI needs (`eval $(cellplane endpoint env --project P)`), after
writing a fresh client certificate of the caller (key made here, only its CSR is sent) with
Cellplane's root as `ca.pem`, the layout `DOCKER_CERT_PATH` expects.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated, Any

import typer

from cellplane.cli import output
from cellplane.cli.certs import issue_user_certificate, write_private

__all__ = ["app"]

app = typer.Typer(
    help="A project's Docker-compatible endpoint (the docker CLI and docker-py run cells).",
    no_args_is_help=True,
)


def _row(ep: dict[str, Any]) -> list[Any]:
    return [
        ep.get("project"),
        ep.get("docker_host"),
        ep.get("id"),
        output.age(ep.get("created_at")),
    ]


@app.command("create")
def create(
    project: output.ProjectOpt = "default",
    port: Annotated[
        int | None,
        typer.Option("--port", min=1024, max=65535, help="TCP port (default: a free one)."),
    ] = None,
    quiet: output.QuietOpt = False,
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Open the project's endpoint on its own TLS port of the server."""
    with output.session() as client:
        ep = client.create_docker_endpoint(project, port=port)
    if output.print_id(quiet, ep):
        return
    if output.is_json(out):
        output.print_json(ep)
        return
    output.say(
        f"endpoint of project {output.escape(str(ep.get('project')))} listening at "
        f"{output.escape(str(ep.get('docker_host')))}"
    )
    output.say(f"configure docker with: eval $(cellplane endpoint env --project {project})")


@app.command("ls")
def ls(
    project: output.ProjectOpt = "default",
    quiet: output.QuietOpt = False,
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """List the project's endpoint (there is at most one)."""
    with output.session() as client:
        items = client.list_docker_endpoints(project)
    output.print_list(
        out, items, quiet, ["PROJECT", "DOCKER_HOST", "ID", "AGE"], (_row(e) for e in items)
    )


@app.command("rm")
def rm(project: output.ProjectOpt = "default") -> None:
    """Close the project's endpoint (its containers stay, as cells)."""
    with output.session() as client:
        client.delete_docker_endpoint(project)
    output.say(f"endpoint of project {output.escape(project)} closed")


def _default_dir(project: str) -> Path:
    from cellplane.client import config

    return config.config_path().parent / "docker" / project


@app.command("env")
def env(
    project: output.ProjectOpt = "default",
    cert_dir: Annotated[
        Path | None,
        typer.Option(
            "--cert-dir",
            help="Where to write ca.pem, cert.pem, key.pem "
            "(default: docker/<project> beside the CLI's configuration).",
        ),
    ] = None,
    days: Annotated[int, typer.Option("--days", help="Validity in days.", min=1, max=365)] = 30,
) -> None:
    """Print DOCKER_HOST, DOCKER_TLS_VERIFY and DOCKER_CERT_PATH for the project's endpoint,
    after writing a fresh client certificate: `eval $(cellplane endpoint env --project P)`."""
    directory = cert_dir or _default_dir(project)
    with output.session() as client:
        endpoints = client.list_docker_endpoints(project)
        if not endpoints:
            output.fail(
                f"project {project!r} has no Docker endpoint",
                f"open one with `cellplane endpoint create --project {project}`",
            )
        _me, key_pem, issued = issue_user_certificate(client, days)
        root = client.ca_certificates()
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private(directory / "key.pem", key_pem, 0o600)
        # The chain (leaf, then the tenant's CA): the endpoint trusts the root only.
        write_private(directory / "cert.pem", str(issued.get("chain", "")).encode(), 0o644)
        write_private(directory / "ca.pem", root.encode(), 0o644)
    except OSError as exc:
        output.fail("cannot write the certificate files", str(exc))
    host = str(endpoints[0].get("docker_host"))
    print(f"export DOCKER_HOST={shlex.quote(host)}")
    print("export DOCKER_TLS_VERIFY=1")
    print(f"export DOCKER_CERT_PATH={shlex.quote(str(directory.resolve()))}")
    print(
        f"# Run this command to configure your shell: eval $(cellplane endpoint env --project {project})"
    )
