"""Passwords (argon2id, dummy hash for unknown users), lockout, high-entropy secrets."""

from __future__ import annotations

import hashlib
import hmac

import argon2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cellplane.identity import passwords
from cellplane.identity.passwords import (
    LockoutPolicy,
    LockoutState,
    generate_secret,
    hash_password,
    hash_secret,
    needs_rehash,
    verify_password,
    verify_secret,
)


@pytest.fixture(scope="module")
def stored() -> str:
    return hash_password("correct horse battery staple")


def test_hash_is_argon2id_at_owasp_parameters(stored: str) -> None:
    params = argon2.extract_parameters(stored)
    assert params.type is argon2.Type.ID
    assert (params.memory_cost, params.time_cost, params.parallelism) == (19 * 1024, 2, 1)
    assert params.salt_len >= 16 and params.hash_len >= 32
    assert hash_password("correct horse battery staple") != stored  # salted


def test_verify(stored: str) -> None:
    assert verify_password(stored, "correct horse battery staple")
    assert not verify_password(stored, "correct horse battery stapl")
    assert not verify_password(stored, "")


def test_corrupt_stored_hash_fails_closed() -> None:
    assert not verify_password("not-a-hash", "whatever")
    assert not verify_password("$argon2id$v=19$m=19456,t=2,p=1$broken", "whatever")


class VerifySpy:
    """Records the hashes the real argon2 verify saw (the real verify still runs)."""

    def __init__(self) -> None:
        self.hashes: list[str] = []


@pytest.fixture()
def spy(monkeypatch: pytest.MonkeyPatch) -> VerifySpy:
    spy = VerifySpy()
    real = argon2.PasswordHasher.verify

    def verify(hasher: argon2.PasswordHasher, hash_: str | bytes, password: str | bytes) -> bool:
        spy.hashes.append(str(hash_))
        return real(hasher, hash_, password)

    monkeypatch.setattr(argon2.PasswordHasher, "verify", verify)
    return spy


def test_unknown_user_runs_a_real_argon2_verify(spy: VerifySpy, stored: str) -> None:
    assert not verify_password(None, "correct horse battery staple")
    assert len(spy.hashes) == 1
    dummy = spy.hashes[0]
    # The dummy is a genuine argon2id hash with the very same cost as a stored one.
    assert argon2.extract_parameters(dummy) == argon2.extract_parameters(stored)
    assert dummy != stored

    assert not verify_password(stored, "wrong")
    assert spy.hashes[1:] == [stored]  # same work: exactly one verification each


def test_unknown_user_never_matches_even_the_dummy_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    known = hash_password("leaked dummy password")
    monkeypatch.setattr(passwords, "_dummy_hash", lambda: known)
    assert not verify_password(None, "leaked dummy password")
    assert verify_password(known, "leaked dummy password")


def test_corrupt_hash_costs_a_dummy_verify(spy: VerifySpy) -> None:
    assert not verify_password("garbage", "pw")
    assert spy.hashes == ["garbage", passwords._dummy_hash()]


def test_needs_rehash(stored: str) -> None:
    assert not needs_rehash(stored)
    cheap = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash("pw")
    assert needs_rehash(cheap)
    assert verify_password(cheap, "pw")  # old hashes still verify, then get rehashed
    assert needs_rehash("garbage")


def test_secrets() -> None:
    secret = generate_secret()
    assert len(secret) >= 43 and generate_secret() != secret
    digest = hash_secret(secret)
    assert digest == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in digest
    assert verify_secret(digest, secret)
    assert not verify_secret(digest, secret[:-1])
    assert not verify_secret(digest, "")
    with pytest.raises(ValueError):
        generate_secret(8)


def test_verify_secret_uses_constant_time_compare(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def recording(a: str, b: str) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", recording)
    assert verify_secret(hash_secret("s" * 40), "s" * 40)
    assert calls == [(hash_secret("s" * 40), hash_secret("s" * 40))]


# -- lockout --------------------------------------------------------------------------------

POLICY = LockoutPolicy(max_failures=3, window_s=60, lock_s=300)


def fail(state: LockoutState, *times: float) -> LockoutState:
    for t in times:
        state = POLICY.record_failure(state, t)
    return state


def test_locks_after_max_failures_in_window() -> None:
    state = fail(LockoutState(), 0, 10)
    assert not POLICY.is_locked(state, 10) and state.failures == 2
    state = fail(state, 20)
    assert POLICY.is_locked(state, 20)
    assert state.locked_until == 20 + 300


def test_auto_unlock_and_fresh_start() -> None:
    state = fail(LockoutState(), 0, 1, 2)
    assert POLICY.is_locked(state, 301)
    assert not POLICY.is_locked(state, 302)
    state = fail(state, 400)
    assert not POLICY.is_locked(state, 400) and state.failures == 1


def test_failures_while_locked_do_not_extend_the_lock() -> None:
    locked = fail(LockoutState(), 0, 1, 2)
    assert fail(locked, 100, 200, 300) == locked


def test_window_expiry_forgets_old_failures() -> None:
    state = fail(LockoutState(), 0, 10, 61)  # the first window closed at 60
    assert not POLICY.is_locked(state, 61) and state.failures == 1
    state = fail(state, 62, 63)
    assert POLICY.is_locked(state, 63)


def test_success_resets() -> None:
    state = fail(LockoutState(), 0, 1)
    state = POLICY.record_success(state)
    assert state == LockoutState()
    assert not POLICY.is_locked(fail(state, 2, 3), 3)


@pytest.mark.parametrize("kwargs", [{"max_failures": 0}, {"window_s": 0}, {"lock_s": -1}])
def test_policy_validation(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        LockoutPolicy(**kwargs)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.floats(0, 200)), max_size=40))
def test_lockout_invariants(events: list[tuple[bool, float]]) -> None:
    """Locked only after max_failures failures since the last success; never forever."""
    state, now, since_success = LockoutState(), 0.0, 0
    for success, gap in events:
        now += gap
        if POLICY.is_locked(state, now):
            assert since_success >= POLICY.max_failures
            assert state.locked_until is not None and state.locked_until <= now + POLICY.lock_s
            continue  # callers do not even try while locked
        if success:
            state, since_success = POLICY.record_success(state), 0
        else:
            state, since_success = POLICY.record_failure(state, now), since_success + 1
        assert state.failures < POLICY.max_failures
        assert not POLICY.is_locked(state, now + POLICY.lock_s)
