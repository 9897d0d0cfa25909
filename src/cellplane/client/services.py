"""Services: N identical cells from one template. A part of `cellplane.client.Client`.

Every change answers a task whose entity is the service; `wait_task` follows it until the
service has its count of running cells of the current template (or the change failed).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cellplane.client._base import BaseClient, JSONDict, seg

__all__ = ["ServicesApi"]


class ServicesApi(BaseClient):
    """The service routes of the API (`/v1/projects/{project}/services`)."""

    def create_service(
        self,
        project: str,
        name: str,
        template: Mapping[str, Any],
        instances: int,
        *,
        max_unavailable: int | None = None,
        max_surge: int | None = None,
        isolation: str | None = None,
        idempotency_key: str | None = None,
    ) -> JSONDict:
        """Create a service of `instances` cells from `template` (a cell create body without a
        name); returns the task. `isolation` (`standard` or `sandbox`) sets the template's class
        of its cells; None: the template's, else the tenant's or project's minimum."""
        tpl = dict(template)
        if isolation is not None:
            tpl["isolation"] = isolation
        body: JSONDict = {"name": name, "template": tpl, "instances": instances}
        policy = _policy(max_unavailable, max_surge)
        if policy:
            body["update"] = policy
        return self._json(
            "POST",
            f"/v1/projects/{seg(project)}/services",
            json_body=body,
            idempotency_key=idempotency_key,
        )

    def list_services(self, project: str) -> list[JSONDict]:
        return list(self._json("GET", f"/v1/projects/{seg(project)}/services")["items"])

    def get_service(self, project: str, name: str) -> JSONDict:
        return self._json("GET", f"/v1/projects/{seg(project)}/services/{seg(name)}")

    def scale_service(
        self, project: str, name: str, instances: int, *, idempotency_key: str | None = None
    ) -> JSONDict:
        return self._json(
            "POST",
            f"/v1/projects/{seg(project)}/services/{seg(name)}/scale",
            json_body={"instances": instances},
            idempotency_key=idempotency_key,
        )

    def update_service(
        self,
        project: str,
        name: str,
        template: Mapping[str, Any],
        *,
        max_unavailable: int | None = None,
        max_surge: int | None = None,
        isolation: str | None = None,
        idempotency_key: str | None = None,
    ) -> JSONDict:
        """Roll out a new template (the whole cell body, without a name); returns the task.
        `isolation` sets the template's class (a template naming none gets the minimum)."""
        tpl = dict(template)
        if isolation is not None:
            tpl["isolation"] = isolation
        body: JSONDict = {"template": tpl}
        policy = _policy(max_unavailable, max_surge)
        if policy:
            body["update"] = policy
        return self._json(
            "POST",
            f"/v1/projects/{seg(project)}/services/{seg(name)}/update",
            json_body=body,
            idempotency_key=idempotency_key,
        )

    def delete_service(self, project: str, name: str) -> JSONDict:
        """Delete the service and its cells; returns the task."""
        return self._json("DELETE", f"/v1/projects/{seg(project)}/services/{seg(name)}")


def _policy(max_unavailable: int | None, max_surge: int | None) -> JSONDict:
    out: JSONDict = {}
    if max_unavailable is not None:
        out["max_unavailable"] = max_unavailable
    if max_surge is not None:
        out["max_surge"] = max_surge
    return out
