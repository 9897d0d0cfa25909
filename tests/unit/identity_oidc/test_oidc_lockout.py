"""Password guessing: throttled per address before per account, with an atomic account counter.

Regression tests of issue 7, item 4: six wrong passwords from one address locked a tenant's
admin out (and, repeated, kept them out); 30 parallel guesses got 6-10 real password checks
where the policy allows 5.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from oidc_support import Oidc

from cellplane.identity.oidc import login as oidc_mod
from cellplane.identity.ratelimit import RateLimiter


def test_one_address_is_throttled_before_the_account_locks(oidc: Oidc) -> None:
    oidc.add_user("admin2")
    st = oidc.provider.settings
    assert st.source_max_failures < st.max_failures
    answers = [oidc.login_from("203.0.113.9", "admin2", "wrong") for _ in range(12)]
    assert answers[: st.source_max_failures] == ["failed"] * st.source_max_failures
    assert set(answers[st.source_max_failures :]) == {"slow"}
    # The throttled address cannot even try the right password ...
    assert oidc.login_from("203.0.113.9", "admin2") == "slow"
    # ... but the owner, elsewhere, was never locked out.
    assert oidc.login_from("198.51.100.7", "admin2") == "ok"
    # Over HTTP the throttle is a 429 with Retry-After, before any password check.
    for _ in range(st.source_max_failures):
        oidc.password_login("admin2", "wrong")
    r = oidc.password_login("admin2")
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert r.json()["error"] == "temporarily_unavailable"


def test_a_slow_single_address_never_locks_the_account(oidc: Oidc) -> None:
    """One guess per refill interval from one address: the window has passed each time."""
    oidc.add_user("patient")
    st = oidc.provider.settings
    for _ in range(st.source_max_failures):
        assert oidc.login_from("203.0.113.10", "patient", "wrong") == "failed"
    for _ in range(3 * st.max_failures):
        oidc.advance(st.source_failure_interval_s)
        assert oidc.login_from("203.0.113.10", "patient", "wrong") == "failed"
    assert oidc.login_from("198.51.100.8", "patient") == "ok"


def test_good_logins_spend_no_failures_and_do_not_reset_them(oidc: Oidc) -> None:
    """A good login gives back the slot it reserved, and only that: signing in to one's own
    account must not buy more guesses at someone else's."""
    oidc.add_user("typo")
    oidc.add_user("mine")
    n = oidc.provider.settings.source_max_failures
    for _ in range(n - 1):
        assert oidc.login_from("192.0.2.1", "typo", "wrong") == "failed"
    for _ in range(n + 2):
        assert oidc.login_from("192.0.2.1", "mine") == "ok"
    assert oidc.login_from("192.0.2.1", "typo", "wrong") == "failed"
    assert oidc.login_from("192.0.2.1", "typo") == "slow"


def test_parallel_guesses_get_at_most_max_failures_real_checks(
    oidc: Oidc, monkeypatch: pytest.MonkeyPatch
) -> None:
    uid = oidc.add_user("target")
    real = oidc_mod.verify_password
    checks: list[str] = []
    lock = threading.Lock()

    def counting(stored: str | None, password: str) -> bool:
        if stored is not None:
            with lock:
                checks.append(password)
        return real(stored, password)

    monkeypatch.setattr(oidc_mod, "verify_password", counting)
    with ThreadPoolExecutor(30) as pool:
        answers = list(
            pool.map(lambda i: oidc.login_from(f"10.9.0.{i}", "target", f"guess-{i}"), range(30))
        )
    assert set(answers) == {"failed"}
    assert len(checks) <= oidc.provider.settings.max_failures, len(checks)
    with oidc.plat.svc.db.reader() as s:
        row = s.get(oidc_mod.User, uid)
        assert row is not None and row.locked_until is not None


def test_a_locked_account_still_admits_its_familiar_address(oidc: Oidc) -> None:
    oidc.add_user("owner")
    assert oidc.login_from("198.51.100.20", "owner") == "ok"  # the owner's usual address
    for i in range(oidc.provider.settings.max_failures):
        assert oidc.login_from(f"10.8.0.{i}", "owner", "wrong") == "failed"
    assert oidc.login_from("192.0.2.200", "owner") == "failed"  # locked for strangers
    assert oidc.login_from("198.51.100.20", "owner") == "ok"  # not for the owner
    # Familiarity comes from the audit log, so it survives a restart (a new provider).
    oidc.provider._familiar.clear()
    assert oidc.login_from("198.51.100.20", "owner") == "ok"
    assert oidc.login_from("192.0.2.201", "owner") == "failed"
    # A familiar address guessing wrong is still throttled by its own budget.
    answers = {oidc.login_from("198.51.100.20", "owner", "wrong") for _ in range(10)}
    assert answers == {"failed", "slow"}


def test_introspection_is_rate_limited_like_the_token_endpoint(oidc: Oidc) -> None:
    """Item 9: /introspect authenticates a client by its secret, so it shares /token's bucket."""
    oidc.provider.limiter = RateLimiter(rate_per_s=0.01, burst=3)
    cid, secret = oidc.add_client("rs")
    codes = [
        oidc.client.post(
            oidc.url("/introspect"), data={"token": "x" * 40}, auth=(cid, "wrong-" + secret)
        ).status_code
        for _ in range(5)
    ]
    assert codes[:3] == [401, 401, 401] and codes[3:] == [429, 429], codes
    r = oidc.client.post(oidc.url("/introspect"), data={"token": "x"}, auth=(cid, secret))
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
