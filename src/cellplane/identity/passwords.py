"""Password hashing, account lockout, and hashing of high-entropy secrets.

Called by the identity service's password grant and user directory (hash on set, verify on
login, rehash when parameters change), and by anything storing client secrets or API tokens
(``hash_secret`` / ``verify_secret``).

Passwords: argon2id with OWASP's recommended minimum (Password Storage Cheat Sheet):
m = 19 MiB (19456 KiB), t = 2 iterations, p = 1 lane; 16-byte salt, 32-byte tag. argon2 is
memory-hard, so each guess of a leaked hash costs an attacker 19 MiB and two passes.
``verify_password(None, ...)`` runs a real verification against a dummy hash made with the
same parameters, so an unknown user costs the same work as a known one and response time
does not tell whether an account exists.

Secrets (client secrets, API tokens) are random, >= 128 bits: no one can enumerate that
space, so a slow hash buys nothing and would add ~20 ms to every API call. They are stored
as SHA-256 (a database leak yields nothing usable) and compared in constant time.

Lockout is a pure state machine: the caller stores :class:`LockoutState` next to the user
and passes ``now``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import secrets
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import argon2

__all__ = [
    "ARGON2_MEMORY_KIB",
    "ARGON2_PARALLELISM",
    "ARGON2_TIME_COST",
    "LockoutPolicy",
    "LockoutState",
    "generate_secret",
    "hash_password",
    "hash_secret",
    "needs_rehash",
    "verify_password",
    "verify_secret",
]

ARGON2_MEMORY_KIB: Final = 19 * 1024
ARGON2_TIME_COST: Final = 2
ARGON2_PARALLELISM: Final = 1


@functools.cache
def _hasher() -> argon2.PasswordHasher:
    # argon2-cffi is loaded on the first password operation, not by every process importing
    # this module (the API server verifies tokens far more often than it checks passwords).
    import argon2

    return argon2.PasswordHasher(
        time_cost=ARGON2_TIME_COST,
        memory_cost=ARGON2_MEMORY_KIB,
        parallelism=ARGON2_PARALLELISM,
        hash_len=32,
        salt_len=16,
        type=argon2.Type.ID,
    )


def hash_password(password: str) -> str:
    """An argon2id PHC string (``$argon2id$v=19$m=19456,t=2,p=1$...``) for storage."""
    return _hasher().hash(password)


@functools.cache
def _dummy_hash() -> str:
    # Made once per process with the live parameters so its cost matches real hashes.
    return _hasher().hash(secrets.token_urlsafe(32))


def verify_password(stored_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches ``stored_hash``; ``None`` means "no such user".

    Always runs one argon2 verification, so the unknown-user path and the wrong-password
    path do the same work. A corrupt stored hash fails closed (returns ``False``).
    """
    from argon2.exceptions import InvalidHashError, VerificationError

    target = stored_hash if stored_hash is not None else _dummy_hash()
    try:
        matched = _hasher().verify(target, password)
    except InvalidHashError:
        # Spend the same work as a real check before refusing.
        _safe_verify(_dummy_hash(), password)
        return False
    except VerificationError:
        return False
    return matched and stored_hash is not None


def _safe_verify(stored: str, password: str) -> None:
    from argon2.exceptions import InvalidHashError, VerificationError

    with contextlib.suppress(VerificationError, InvalidHashError):
        _hasher().verify(stored, password)


def needs_rehash(stored_hash: str) -> bool:
    """Whether ``stored_hash`` was made with other parameters; rehash after a good login."""
    from argon2.exceptions import InvalidHashError

    try:
        return _hasher().check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True


def generate_secret(nbytes: int = 32) -> str:
    """A new URL-safe random secret (client secret, API token) of ``nbytes`` of entropy."""
    if nbytes < 16:
        raise ValueError("secrets need at least 16 bytes (128 bits) of entropy")
    return secrets.token_urlsafe(nbytes)


def hash_secret(secret: str) -> str:
    """SHA-256 hex digest of a high-entropy secret; never use this for passwords."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def verify_secret(stored_digest: str, presented: str) -> bool:
    """Constant-time comparison of ``presented`` against a :func:`hash_secret` digest."""
    return hmac.compare_digest(hash_secret(presented), stored_digest)


@dataclass(frozen=True)
class LockoutState:
    """Failures counted in the current window; ``locked_until`` set while locked."""

    failures: int = 0
    window_start: float | None = None
    locked_until: float | None = None


@dataclass(frozen=True)
class LockoutPolicy:
    """Lock an account for ``lock_s`` after ``max_failures`` failures within ``window_s``.

    The window is fixed, opened by the first failure. The lock ends by itself. Callers
    check :meth:`is_locked` before verifying a password and do not verify while locked,
    so a locked account cannot be used to probe guesses.
    """

    max_failures: int = 5
    window_s: float = 900.0
    lock_s: float = 900.0

    def __post_init__(self) -> None:
        if self.max_failures < 1 or self.window_s <= 0 or self.lock_s <= 0:
            raise ValueError("max_failures must be >= 1 and window_s, lock_s positive")

    def is_locked(self, state: LockoutState, now: float) -> bool:
        return state.locked_until is not None and now < state.locked_until

    def record_failure(self, state: LockoutState, now: float) -> LockoutState:
        """The state after one failed login at ``now``."""
        if self.is_locked(state, now):
            # Failures while locked neither extend nor shorten the lock.
            return state
        if state.window_start is None or now - state.window_start >= self.window_s:
            state = LockoutState(failures=0, window_start=now)
        failures = state.failures + 1
        if failures >= self.max_failures:
            return LockoutState(failures=0, window_start=None, locked_until=now + self.lock_s)
        return replace(state, failures=failures, locked_until=None)

    def record_success(self, state: LockoutState) -> LockoutState:
        """The state after a successful login: all failures forgotten."""
        return LockoutState()
