"""The Python SDK for the Cellplane HTTP API (docs/api.md).

Called by the CLI (`cellplane.cli`, which uses nothing else to reach the server), by
integration tests, benchmarks and users' scripts. One method per public route, on `Client`;
the answers are the API's JSON objects as plain dicts (typed as `cellplane.client.models`
TypedDicts where that is cheap), so the SDK never lags behind the server's fields.

The package never imports the CLI. Its modules, one per noun, each adding the routes of that
noun to `Client`::

    _base           transport: retries, Idempotency-Key, credentials, problem documents
    errors          CellplaneError and its subclasses
    config          the configuration file (server, token, CA, login session; 0600)
    credentials     CredentialProvider, SessionCredentials (token renewal under a lock)
    sse             text/event-stream parsing
    models          TypedDicts of the identity, quota, certificate and audit answers
    hosts, flavors, images, projects, cells, volumes, tasks, clusters, services,
    tenants, users, groups, oauth_clients, roles, quotas, certificates, audit, identity

Failure handling (see `_base`): POSTs carry an `Idempotency-Key` and are retried under it;
GETs are retried; DELETEs only when the request never left; every error answer raises a
`CellplaneError`; a login session renews its access token before it expires and once after
a 401.
"""

from __future__ import annotations

from cellplane.client._client import Client
from cellplane.client.clusters import TERMINAL_CLUSTER_STATES
from cellplane.client.credentials import CredentialProvider, SessionCredentials
from cellplane.client.errors import (
    CellplaneConnectionError,
    CellplaneError,
    CellplaneTimeoutError,
)
from cellplane.client.sse import ServerSentEvent, iter_sse
from cellplane.client.tasks import TERMINAL_TASK_STATES

__all__ = [
    "TERMINAL_CLUSTER_STATES",
    "TERMINAL_TASK_STATES",
    "CellplaneConnectionError",
    "CellplaneError",
    "CellplaneTimeoutError",
    "Client",
    "CredentialProvider",
    "ServerSentEvent",
    "SessionCredentials",
    "iter_sse",
]
