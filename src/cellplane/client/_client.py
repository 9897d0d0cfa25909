"""`Client`: every noun of the SDK in one class (see `cellplane.client`)."""

from __future__ import annotations

from cellplane.client.audit import AuditApi
from cellplane.client.cells import CellsApi
from cellplane.client.certificates import CertificatesApi
from cellplane.client.clusters import ClustersApi
from cellplane.client.docker_endpoints import DockerEndpointsApi
from cellplane.client.flavors import FlavorsApi
from cellplane.client.groups import GroupsApi
from cellplane.client.hosts import HostsApi
from cellplane.client.identity import IdentityApi
from cellplane.client.images import ImagesApi
from cellplane.client.networks import NetworksApi
from cellplane.client.oauth_clients import OAuthClientsApi
from cellplane.client.projects import ProjectsApi
from cellplane.client.quotas import QuotasApi
from cellplane.client.roles import RolesApi
from cellplane.client.services import ServicesApi
from cellplane.client.tasks import TasksApi
from cellplane.client.tenants import TenantsApi
from cellplane.client.users import UsersApi
from cellplane.client.volumes import VolumesApi

__all__ = ["Client"]


class Client(
    IdentityApi,
    HostsApi,
    FlavorsApi,
    ImagesApi,
    ProjectsApi,
    CellsApi,
    VolumesApi,
    NetworksApi,
    TasksApi,
    ClustersApi,
    ServicesApi,
    TenantsApi,
    UsersApi,
    GroupsApi,
    OAuthClientsApi,
    RolesApi,
    QuotasApi,
    CertificatesApi,
    AuditApi,
    DockerEndpointsApi,
):
    """A synchronous client of one Cellplane server: one method per public route.

    >>> with Client("https://cp.example:8443", token) as cp:
    ...     task = cp.create_cell("default", "web", "busybox", command=["sleep", "60"])
    ...     cp.wait_task(task["id"])

    Each base class holds the routes of one noun (`cellplane.client.cells`, ...); they share
    the transport of `BaseClient` (retries, idempotency keys, credentials, errors).
    """
