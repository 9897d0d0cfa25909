"""`GET /system/df` of a Docker-compatible endpoint: the images of Cellplane's catalogue (their
archive sizes), the project's containers and volumes, with the sizes the platform knows.

What it does not know is reported as Docker reports an unknown size: a container's writable layer
(`SizeRw`, 0: the agent does not measure it) and a volume's use (`UsageData.Size` -1; a volume's
size limit is in its `Status`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web

from cellplane.dockerapi import resource_views as rv
from cellplane.dockerapi import views
from cellplane.dockerapi.base import blocking, context, json_response, principal, project_cells
from cellplane.dockerapi.volumes import project_volumes
from cellplane.ids import utcnow
from cellplane.services import images

__all__ = ["routes"]


def _epoch(iso: str | None) -> int:
    return int(datetime.fromisoformat(iso).timestamp()) if iso else 0


def _image(img: dict[str, Any], users: int) -> dict[str, Any]:
    name = str(img["name"])
    tag = name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"
    size = int(img.get("size_bytes") or 0)
    return {
        "Id": f"sha256:{img.get('sha256') or ''}",
        "ParentId": "",
        "RepoTags": [tag],
        "RepoDigests": [],
        "Created": _epoch(img.get("created_at")),
        "Size": size,
        "SharedSize": 0,
        "VirtualSize": size,
        "Labels": {},
        "Containers": users,
    }


async def disk_usage(request: web.Request) -> web.Response:
    ctx, p = context(request), principal(request)
    cells = await blocking(project_cells, ctx, p)
    catalogue = await blocking(images.list_images, ctx.svc)
    vols = await blocking(project_volumes, ctx, p)
    now = utcnow()
    image_views = [
        _image(img, sum(1 for c in cells if c.get("image") == img["name"])) for img in catalogue
    ]
    containers = [{**views.summary(c, now), "SizeRw": 0, "SizeRootFs": 0} for c in cells]
    volume_views = [
        {
            **rv.volume_view(v, ctx.project_name),
            "UsageData": {"Size": -1, "RefCount": len(v.get("attached_to") or [])},
        }
        for v in vols
    ]
    return json_response(
        {
            "LayersSize": sum(i["Size"] for i in image_views),
            "Images": image_views,
            "Containers": containers,
            "Volumes": volume_views,
            "BuildCache": [],
        }
    )


def routes() -> list[tuple[str, str, Any]]:
    return [("GET", "/system/df", disk_usage)]
