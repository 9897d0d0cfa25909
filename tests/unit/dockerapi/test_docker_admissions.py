"""Admissions kept for a few seconds (`dockerapi.admissions`): what is kept, for how long, and
what never is. Pure: the time is passed in."""

from __future__ import annotations

from cellplane.dockerapi.admissions import TTL_S, Admissions
from cellplane.services.context import Principal

ALICE = Principal(subject="usr-alice", tenant_id="tnt-1", tenant="acme", roles=(), name="alice")
BOB = Principal(subject="usr-bob", tenant_id="tnt-1", tenant="acme", roles=(), name="bob")
CERT_A, CERT_B = b"a" * 32, b"b" * 32
FAR = 1e12


def test_an_admission_is_kept_for_the_ttl_and_no_longer() -> None:
    kept = Admissions()
    kept.put((CERT_A, "cells:write"), ALICE, now=100.0, ends=FAR)
    assert kept.get((CERT_A, "cells:write"), 100.0) is ALICE
    assert kept.get((CERT_A, "cells:write"), 100.0 + TTL_S - 0.001) is ALICE
    assert kept.get((CERT_A, "cells:write"), 100.0 + TTL_S) is None
    assert kept.get((CERT_A, "cells:write"), 100.0) is None  # gone once expired


def test_an_admission_is_for_its_certificate_and_permission_only() -> None:
    kept = Admissions()
    kept.put((CERT_A, "cells:read"), ALICE, now=0.0, ends=FAR)
    assert kept.get((CERT_A, "cells:write"), 1.0) is None  # read does not admit a write
    assert kept.get((CERT_B, "cells:read"), 1.0) is None
    kept.put((CERT_B, "cells:read"), BOB, now=0.0, ends=FAR)
    assert kept.get((CERT_A, "cells:read"), 1.0) is ALICE
    assert kept.get((CERT_B, "cells:read"), 1.0) is BOB


def test_an_admission_never_outlives_its_certificate() -> None:
    kept = Admissions()
    kept.put((CERT_A, "cells:read"), ALICE, now=10.0, ends=11.0)
    assert kept.get((CERT_A, "cells:read"), 10.5) is ALICE
    assert kept.get((CERT_A, "cells:read"), 11.0) is None
    kept.put((CERT_B, "cells:read"), BOB, now=10.0, ends=9.0)  # ended already: not kept
    assert kept.get((CERT_B, "cells:read"), 10.0) is None


def test_the_oldest_are_dropped_beyond_the_size() -> None:
    kept = Admissions(size=2)
    for i in range(3):
        kept.put((bytes([i]) * 32, "cells:read"), ALICE, now=0.0, ends=FAR)
    assert kept.get((bytes([0]) * 32, "cells:read"), 1.0) is None
    assert kept.get((bytes([1]) * 32, "cells:read"), 1.0) is ALICE
    assert kept.get((bytes([2]) * 32, "cells:read"), 1.0) is ALICE
