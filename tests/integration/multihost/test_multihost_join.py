"""Joining with certificates on three namespace hosts: one-use tokens spent, host certificates
from the CA, mutual TLS; a revoked host refused at once and back only with a new join token."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from tests.integration.multihost.conftest import ThreeHosts, wait_for

from cellplane import devhosts

pytestmark = pytest.mark.integration


def test_hosts_joined_with_one_use_tokens_and_hold_host_certificates(
    three_hosts: ThreeHosts,
) -> None:
    tokens = three_hosts.client.list_join_tokens()
    spent = [t for t in tokens if (t["state"], t["used"], t["uses_left"]) == ("USED", 1, 0)]
    assert len(spent) >= 3, tokens  # one per host, each spent by its join
    ca = x509.load_pem_x509_certificate(three_hosts.deployment.ca_file.read_bytes())  # type: ignore[union-attr]
    for name, host in three_hosts.hosts.items():
        chain = x509.load_pem_x509_certificates(
            (host.data_dir / "agent" / "tls" / "host.pem").read_bytes()
        )
        leaf = chain[0]
        assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == name
        assert chain[-1].issuer == ca.subject  # the system intermediate, under our root
        assert three_hosts.host_rows()[name]["state"] == "READY"


def test_a_revoked_host_is_refused_at_once_and_rejoins_only_with_a_join_token(
    three_hosts: ThreeHosts,
) -> None:
    c, d = three_hosts.client, three_hosts.deployment
    row = three_hosts.host_rows()["h2"]
    revoked = c.revoke_host(row["id"])
    assert revoked["state"] == "DOWN" and "revoked" in revoked["state_reason"]
    # Its agent's next call (a heartbeat within 2 s) is refused, naming the revocation.
    wait_for(lambda: "(revoked)" in three_hosts.log("h2"), what="h2's agent refused")
    assert three_hosts.host_rows()["h2"]["state"] == "DOWN"
    # Restarted with its old certificate and its spent token: still refused.
    devhosts.kill_agent(three_hosts.data_dir, "h2")
    devhosts.start_agent(three_hosts.data_dir, "h2", server_url=d.url, ca_file=d.ca_file)
    wait_for(
        lambda: not devhosts.get_host(three_hosts.data_dir, "h2").running,
        what="h2's agent to give up",
    )
    assert three_hosts.host_rows()["h2"]["state"] == "DOWN"
    # A new join token brings it back, with a new certificate.
    token = c.create_join_token(ttl_s=300, uses=1)["token"]
    devhosts.start_agent(
        three_hosts.data_dir, "h2", server_url=d.url, join_token=token, ca_file=d.ca_file
    )
    back = three_hosts.wait_state("h2", "READY")
    assert back["id"] == row["id"] and back["revoked_at"] is None
