"""The control plane's part of `docker create`, in-process: admitting a cell and placing it.

`docker run -d` through an endpoint is measured whole by bench/docker_run.py (against the bare
engine). This isolates the server's own share of a create, without HTTP, TLS or an engine:
`services.cells.create(..., prepare=True)` (admission, network address, task) and
`services.placement.place_one` (the scheduler's plan on a host snapshot) in one transaction, on
a seeded SQLite database with one registered host, as `dockerapi.containers._create` runs them.
It prints ONE JSON object: medians in ms of the whole, each part and one host snapshot, after
`--warmup` creates. Run it beside another checkout (`PYTHONPATH=<other>/src`) to compare code.

    python bench/create_path.py --creates 300
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "unit" / "api"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--creates", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=50)
    args = parser.parse_args()

    import platform_support as ps
    from sqlalchemy import select

    import cellplane
    from cellplane.ids import utcnow
    from cellplane.services import cells, placement
    from cellplane.services import host_views as hv
    from cellplane.services.context import Principal
    from cellplane.services.schemas import CellCreate
    from cellplane.state.models import Project

    snapshots: list[float] = []
    take = hv.snapshot

    def timed(*a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        try:
            return take(*a, **k)
        finally:
            snapshots.append(time.perf_counter() - t)

    hv.snapshot = timed  # type: ignore[assignment]
    for mod in (cells, placement):
        mod.hosts_mod.snapshot = timed  # type: ignore[attr-defined]
    with tempfile.TemporaryDirectory(prefix="cp-bench-create-") as tmp:
        (Path(tmp) / "t").mkdir()
        (Path(tmp) / "p").mkdir()
        template = ps.make_template(Path(tmp) / "t")
        with ps.platform(Path(tmp) / "p", template) as plat:
            with plat.svc.db.reader() as s:
                tenant = s.scalar(select(Project.tenant_id).where(Project.name == "default"))
            who = Principal(
                subject="usr-bench", tenant_id=str(tenant), tenant="default",
                roles=("project-member",),
            )  # fmt: skip
            whole, create, place = [], [], []
            for i in range(args.warmup + args.creates):
                spec = CellCreate(name=f"c{i}", image="host", cpu=0.01, memory_mb=8, start=False)
                t0 = time.perf_counter()
                with plat.svc.db.session() as s:
                    out = cells.create(plat.svc, s, who, "default", spec, prepare=True)
                    t1 = time.perf_counter()
                    placed = placement.place_one(plat.svc, s, out.body["entity"]["id"], utcnow())
                    t2 = time.perf_counter()
                placed.committed(plat.svc)
                if i >= args.warmup:
                    whole.append(time.perf_counter() - t0)
                    create.append(t1 - t0)
                    place.append(t2 - t1)

    def ms(xs: list[float]) -> float:
        return round(statistics.median(xs) * 1000, 3)

    print(
        json.dumps(
            {
                "creates": args.creates,
                "p50_ms": ms(whole),
                "create_p50_ms": ms(create),
                "place_p50_ms": ms(place),
                "snapshot_p50_ms": ms(snapshots[2 * args.warmup :]),
                "snapshots_per_create": len(snapshots) / (args.warmup + args.creates),
                "code": str(Path(cellplane.__file__).parents[1]),
            }
        )
    )


if __name__ == "__main__":
    main()
