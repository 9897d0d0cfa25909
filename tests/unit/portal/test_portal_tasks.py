"""The tasks page: all of a project's recent tasks with their progress, filtered by state, the
live stream of the same list, and what a viewer sees."""

from __future__ import annotations

import re

from cellplane_platform_support import Platform
from portal_support import add_user, mount, sign_in
from sqlalchemy import select

from cellplane.state.models import Task


def _rows(page: str) -> list[str]:
    return re.findall(r'<a href="/portal/cells/[^"]+">([^<]+)</a>', page)


def test_the_tasks_page_lists_every_task_and_filters_by_state(plat: Platform) -> None:
    client = mount(plat)
    add_user(plat, "vic", "project-viewer")  # reading tasks is a viewer's right too
    for name in ("one", "two", "three"):
        assert plat.create_cell(name, cpu=0.1, memory_mb=32).status_code == 202
    with plat.svc.db.session() as s:
        task = s.scalars(select(Task).where(Task.kind == "CREATE_CELL")).first()
        assert task is not None
        task.state, task.error, first = "ERROR", "the image went away", task.entity_id
    sign_in(client, "vic")
    page = client.get("/portal/projects/default/tasks")
    assert page.status_code == 200 and 'aria-current="page">Tasks</a>' in page.text
    assert sorted(_rows(page.text)) == ["one", "three", "two"]
    assert 'data-sse="/portal/projects/default/tasks/events?all=1"' in page.text
    failed = client.get("/portal/projects/default/tasks?state=ERROR").text
    (name,) = _rows(failed)
    assert f'href="/portal/cells/{first}"' in failed and "the image went away" in failed
    assert 'data-sse="/portal/projects/default/tasks/events?all=1&amp;state=ERROR"' in failed
    assert '<option value="ERROR" selected>' in failed
    assert len(_rows(client.get("/portal/projects/default/tasks?state=QUEUED").text)) == 2
    r = client.get("/portal/projects/default/tasks?state=BOGUS")
    assert r.status_code == 422 and "must be one of QUEUED, STARTED, COMPLETED, ERROR" in r.text
    assert page.text.split("<main", 1)[1].count("<button") == 1  # the filter's, nothing else


def test_the_tasks_stream_sends_the_filtered_list(plat: Platform) -> None:
    client = mount(plat)
    add_user(plat, "dev", "project-member")
    assert plat.create_cell("one", cpu=0.1, memory_mb=32).status_code == 202
    sign_in(client, "dev")
    r = client.get("/portal/projects/default/tasks/events?all=1&state=BOGUS")
    assert r.status_code == 422
    assert client.get("/portal/projects/nope/tasks").status_code == 404
