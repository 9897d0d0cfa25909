"""KeyRing: lifecycle, rotation overlap, JWKS contents and on-disk storage."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from joserfc.jwk import JWKRegistry

from cellplane.identity import keys
from cellplane.identity.keys import KeyRing, KeyStoreError, NoActiveKeyError
from cellplane.identity.tokens import InvalidToken, Reason, TokenIssuer, TokenVerifier

NOW = 1_700_000_000.0
ISS = "https://cellplane.test/identity/alpha"
AUD = "api"
TTL = 300.0
OVERLAP = 600.0


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_generate_one_active_key_with_thumbprint_kid() -> None:
    ring = KeyRing.generate(NOW)
    (key,) = ring.keys
    assert ring.active_key(NOW) == key
    assert key.alg == "ES256" and key.retire_at is None and key.expires_at is None
    assert key.kid == JWKRegistry.import_key(ring.jwks(NOW)["keys"][0]).thumbprint()
    assert "BEGIN PRIVATE KEY" not in repr(key)


def test_jwks_has_public_parts_only() -> None:
    ring = KeyRing.generate(NOW)
    ring.rotate(NOW + 10, OVERLAP)
    for jwk in ring.jwks(NOW + 10)["keys"]:
        assert {"d", "p", "q", "dp", "dq", "qi", "k"}.isdisjoint(jwk)
        assert jwk["use"] == "sig" and jwk["alg"] == "ES256" and jwk["kty"] == "EC"
        assert not JWKRegistry.import_key(jwk).is_private


def test_no_key_before_creation() -> None:
    with pytest.raises(NoActiveKeyError):
        KeyRing.generate(NOW).active_key(NOW - 1)
    with pytest.raises(NoActiveKeyError):
        KeyRing().active_key(NOW)


def test_rotation_overlap_then_old_kid_gone() -> None:
    ring = KeyRing.generate(NOW)
    issuer = TokenIssuer(ring, ISS)
    old_kid = ring.active_key(NOW).kid
    old_token = issuer.issue_access_token("alice", AUD, None, NOW + 50, ttl_s=TTL)

    rotated_at = NOW + 100
    new = ring.rotate(rotated_at, OVERLAP)
    assert ring.active_key(rotated_at) == new and new.kid != old_kid
    new_token = issuer.issue_access_token("bob", AUD, None, rotated_at, ttl_s=TTL)
    assert json.loads(_b64json(new_token.split(".")[0]))["kid"] == new.kid

    # During the overlap both kids are published and the old token verifies to its exp.
    jwks = ring.jwks(rotated_at + 1)
    assert {k["kid"] for k in jwks["keys"]} == {old_kid, new.kid}
    verifier = TokenVerifier(jwks, ISS, AUD, leeway_s=0)
    assert verifier.verify(old_token, NOW + 50 + TTL - 1)["sub"] == "alice"
    assert verifier.verify(new_token, rotated_at + 1)["sub"] == "bob"

    # After the overlap the old kid leaves the JWKS; pruning deletes it.
    after = rotated_at + OVERLAP
    assert [k["kid"] for k in ring.jwks(after)["keys"]] == [new.kid]
    assert ring.prune(after) == [old_kid]
    assert [k.kid for k in ring.keys] == [new.kid]
    late = TokenVerifier(ring.jwks(after), ISS, AUD)
    with pytest.raises(InvalidToken) as info:
        late.verify(old_token, NOW + 50)  # even at a time the token itself was valid
    assert info.value.reason is Reason.UNKNOWN_KID


def test_retired_key_no_longer_signs() -> None:
    ring = KeyRing.generate(NOW)
    first = ring.active_key(NOW)
    ring.rotate(NOW + 10, OVERLAP)
    assert ring.active_key(NOW + 10).kid != first.kid
    assert not ring.keys[0].can_sign(NOW + 10) and ring.keys[0].can_verify(NOW + 10)


def test_quick_second_rotation_does_not_prolong_old_keys() -> None:
    ring = KeyRing.generate(NOW)
    ring.rotate(NOW + 10, 100)
    first = ring.keys[0]
    ring.rotate(NOW + 20, 1000)
    assert ring.keys[0] == first  # already retired: dates untouched
    assert ring.keys[1].expires_at == NOW + 20 + 1000
    assert len(ring.jwks(NOW + 200)["keys"]) == 2


def test_rotate_rejects_negative_overlap() -> None:
    with pytest.raises(ValueError):
        KeyRing.generate(NOW).rotate(NOW, -1)


@pytest.mark.parametrize("alg", keys.SIGNING_ALGORITHMS)
def test_every_algorithm_signs_and_verifies(alg: str) -> None:
    ring = KeyRing.generate(NOW, alg)
    token = TokenIssuer(ring, ISS).issue_access_token("a", AUD, None, NOW)
    assert (
        TokenVerifier(ring.jwks(NOW), ISS, AUD, algorithms=[alg]).verify(token, NOW)["sub"] == "a"
    )
    with pytest.raises(InvalidToken) as info:
        other = "ES384" if alg != "ES384" else "ES256"
        TokenVerifier(ring.jwks(NOW), ISS, AUD, algorithms=[other]).verify(token, NOW)
    assert info.value.reason is Reason.ALG_NOT_ALLOWED


def test_symmetric_algorithms_are_not_generated() -> None:
    with pytest.raises(ValueError):
        KeyRing.generate(NOW, "HS256")


def test_duplicate_kid_refused() -> None:
    key = KeyRing.new_key(NOW)
    with pytest.raises(ValueError, match="duplicate"):
        KeyRing([key, key])


# -- storage -------------------------------------------------------------------------------


def _b64json(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def test_save_load_round_trip_and_modes(tmp_path: Path) -> None:
    ring = KeyRing.generate(NOW)
    token = TokenIssuer(ring, ISS).issue_access_token("alice", AUD, None, NOW)
    ring.rotate(NOW + 10, OVERLAP)
    target = tmp_path / "keys" / "alpha"
    ring.save(target)

    assert mode(target) == 0o700
    files = sorted(target.iterdir())
    assert len(files) == 3  # index + two PEMs, no temporaries left
    assert all(mode(f) == 0o600 for f in files)

    loaded = KeyRing.load(target)
    assert loaded.keys == ring.keys
    assert loaded.jwks(NOW + 10) == ring.jwks(NOW + 10)
    assert TokenVerifier(loaded.jwks(NOW + 10), ISS, AUD).verify(token, NOW + 10)["sub"] == "alice"
    again = TokenIssuer(loaded, ISS).issue_access_token("bob", AUD, None, NOW + 10)
    assert TokenVerifier(ring.jwks(NOW + 10), ISS, AUD).verify(again, NOW + 10)["sub"] == "bob"


def test_save_after_prune_removes_old_key_files(tmp_path: Path) -> None:
    ring = KeyRing.generate(NOW)
    old = ring.active_key(NOW).kid
    ring.rotate(NOW + 1, 10)
    ring.save(tmp_path)
    assert (tmp_path / f"{old}.pem").exists()
    ring.prune(NOW + 100)
    ring.save(tmp_path)
    assert not (tmp_path / f"{old}.pem").exists()
    assert [k.kid for k in KeyRing.load(tmp_path).keys] == [k.kid for k in ring.keys]


def test_save_tightens_an_existing_loose_directory(tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o755)
    KeyRing.generate(NOW).save(tmp_path)
    assert mode(tmp_path) == 0o700


@pytest.mark.parametrize("loosen", ["dir", "key", "index"])
def test_load_refuses_loose_permissions(tmp_path: Path, loosen: str) -> None:
    ring = KeyRing.generate(NOW)
    ring.save(tmp_path)
    target = {
        "dir": tmp_path,
        "key": tmp_path / f"{ring.keys[0].kid}.pem",
        "index": tmp_path / "index.json",
    }[loosen]
    os.chmod(target, 0o755 if loosen == "dir" else 0o644)
    with pytest.raises(KeyStoreError, match="mode"):
        KeyRing.load(tmp_path)


def test_load_refuses_a_swapped_key_file(tmp_path: Path) -> None:
    ring = KeyRing.generate(NOW)
    ring.save(tmp_path / "a")
    other = KeyRing.generate(NOW)
    other.save(tmp_path / "b")
    shutil.copyfile(
        tmp_path / "b" / f"{other.keys[0].kid}.pem", tmp_path / "a" / f"{ring.keys[0].kid}.pem"
    )
    with pytest.raises(KeyStoreError, match="thumbprint"):
        KeyRing.load(tmp_path / "a")


@pytest.mark.parametrize(
    "index",
    [
        "not json",
        '{"format": 99, "keys": []}',
        '{"format": 1}',
        '{"format": 1, "keys": [{"kid": "../../etc/passwd", "alg": "ES256", "created_at": 1,'
        ' "retire_at": null, "expires_at": null}]}',
        '{"format": 1, "keys": [{"kid": "x", "alg": "ES256", "created_at": 1,'
        ' "retire_at": "soon", "expires_at": null}]}',
    ],
)
def test_load_refuses_corrupt_index(tmp_path: Path, index: str) -> None:
    KeyRing.generate(NOW).save(tmp_path)
    (tmp_path / "index.json").write_text(index)
    with pytest.raises(KeyStoreError):
        KeyRing.load(tmp_path)


def test_load_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError):
        KeyRing.load(tmp_path / "absent")
