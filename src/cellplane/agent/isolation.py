"""What isolation classes this host's engine can run, found out at agent start.

`standard` (the engine's default runtime, runc) always; `sandbox` when gVisor's runsc is
installed and a tiny sandboxed container really runs to a clean exit on this engine (the probe
costs about a second at start). The agent reports the classes with its registration
(`wire.RegisterRequest.isolation`) and the scheduler places sandboxed cells only where offered.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
import uuid

from cellplane.drivers.base import ContainerSpec, Driver
from cellplane.drivers.engine import SANDBOX_RUNTIME
from cellplane.drivers.errors import DriverError

__all__ = ["find_runsc", "probe", "runsc_version"]

_PROBE_TIMEOUT_S = 30.0


def find_runsc(path: str | None = None) -> str | None:
    """The runsc executable (`path` if given and found, else the one on PATH), or None."""
    return shutil.which(path or SANDBOX_RUNTIME)


def runsc_version(runsc: str) -> str:
    """'runsc 0.0~20221219.0' (the first line of `runsc --version`), or why it could not run."""
    try:
        out = subprocess.run(
            [runsc, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"runsc did not run: {exc}"
    first = (out.stdout or out.stderr).strip().splitlines()
    return first[0].replace("runsc version", "runsc").strip() if first else "runsc"


def probe(driver: Driver, runsc: str | None, platform: str) -> tuple[list[str], str]:
    """(classes, detail): which classes the engine runs and, for `host show`, how or why not."""
    if runsc is None:
        return ["standard"], "sandbox: not offered (runsc is not installed)"
    version = runsc_version(runsc)
    failure = _run_probe(driver)
    if failure is not None:
        return ["standard"], f"sandbox: not offered ({version}, platform {platform}: {failure})"
    return ["standard", "sandbox"], f"sandbox: {version}, platform {platform}"


def _run_probe(driver: Driver) -> str | None:
    """Run `true` in a sandbox on an overlay of the host's root; None if it exited 0."""
    spec = ContainerSpec(
        name=f"cp-isolation-probe-{uuid.uuid4().hex[:8]}",
        rootfs="/",
        command=["true"],
        runtime=SANDBOX_RUNTIME,
        labels={"cellplane.probe": "isolation"},
    )
    cid: str | None = None
    try:
        cid = driver.create(spec)
        driver.start(cid)
        deadline = time.monotonic() + _PROBE_TIMEOUT_S
        while True:
            info = driver.inspect(cid)
            if not info.running and info.exit_code is not None:
                return None if info.exit_code == 0 else f"the probe exited {info.exit_code}"
            if time.monotonic() > deadline:
                return f"the probe did not finish within {_PROBE_TIMEOUT_S:g} s"
            time.sleep(0.05)
    except DriverError as exc:
        return str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    finally:
        if cid is not None:
            with contextlib.suppress(DriverError):
                driver.remove(cid, force=True)
