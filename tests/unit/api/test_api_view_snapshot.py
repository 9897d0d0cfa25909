"""A view built from several queries agrees with itself when a writer commits between them.

The failure this guards against (the landing CI's Spark cluster test): `GET /v1/clusters/{id}`
read the cluster row, then its task; the executor finished the operation (cluster RUNNING and
task COMPLETED in one transaction) between the two reads, and the answer said PROVISIONING with
a COMPLETED task. A client waiting for the task took the cluster as not provisioned.
"""

from __future__ import annotations

import threading
from typing import Any

from cellplane_platform_support import Platform
from sqlalchemy import event, select

from cellplane.ids import new_id, utcnow
from cellplane.services import tasks as tasks_mod
from cellplane.state.cluster_models import Cluster
from cellplane.state.models import Project, Task


def _provisioning_cluster(plat: Platform) -> tuple[str, str]:
    now = utcnow()
    with plat.svc.db.session() as s:
        project = s.scalars(select(Project).where(Project.name == "default")).first()
        assert project is not None
        c = Cluster(
            id=new_id("clu"),
            project_id=project.id,
            name="sp",
            distro=None,
            spec={},
            state="PROVISIONING",
            operation="CREATE",
            operation_args={},
            created_by="test",
            created_at=now,
            updated_at=now,
        )
        s.add(c)
        task = tasks_mod.new_task(
            s,
            task_id=new_id("tsk"),
            kind="CREATE_CLUSTER",
            entity_kind="cluster",
            entity_id=c.id,
            tenant_id=project.tenant_id,
            project_id=project.id,
            steps=("sp-master-0:spark_master",),
            now=now,
        )
        task.state = "STARTED"
        c.task_id = task.id
        return c.id, task.id


def _finish(plat: Platform, cluster_id: str, task_id: str) -> None:
    """What the executor's `_finish` commits: the cluster RUNNING and its task COMPLETED."""
    with plat.svc.db.session() as s:
        c = s.get(Cluster, cluster_id)
        task = s.get(Task, task_id)
        assert c is not None and task is not None
        c.state, c.operation = "RUNNING", None
        task.state, task.progress = "COMPLETED", 100


def test_a_cluster_view_never_pairs_a_provisioning_cluster_with_a_finished_task(
    plat: Platform,
) -> None:
    cluster_id, task_id = _provisioning_cluster(plat)
    done = {"finished": False}

    def after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        # Once the view has read the cluster row, the operation finishes (another connection,
        # committed) before the view reads the task: the window, made certain.
        if done["finished"] or "FROM clusters" not in statement:
            return
        done["finished"] = True
        worker = threading.Thread(target=_finish, args=(plat, cluster_id, task_id))
        worker.start()
        worker.join(timeout=30)
        assert not worker.is_alive(), "the writer waited for the reader"

    event.listen(plat.svc.db.engine, "after_cursor_execute", after)
    try:
        r = plat.client.get(f"/v1/clusters/{cluster_id}", headers=plat.admin)
    finally:
        event.remove(plat.svc.db.engine, "after_cursor_execute", after)
    assert r.status_code == 200, r.text
    assert done["finished"], "the commit was not interleaved"
    view = r.json()
    # The view is of one moment: before the commit, or (the next read) after it.
    assert (view["state"], view["task"]["state"]) == ("PROVISIONING", "STARTED"), view
    after_view = plat.client.get(f"/v1/clusters/{cluster_id}", headers=plat.admin).json()
    assert (after_view["state"], after_view["task"]["state"]) == ("RUNNING", "COMPLETED")
