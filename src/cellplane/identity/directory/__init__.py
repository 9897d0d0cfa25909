"""The directory of the identity service: tenants, users, groups, OAuth clients, role assignments,
and a tenant's LDAP federation settings.

The operator (system admin) creates a tenant with its first admin; a tenant admin manages that
tenant's users, groups, clients and assignments. Everything a caller names is looked up inside
their own tenant, so another tenant's user, group or client answers 404 like one that does not
exist. Secrets are returned once, when created, and stored hashed.

Modules: ``bodies`` (request bodies), ``common`` (views, lookups in the caller's tenant),
``tenants`` (tenants and users), ``groups`` (groups, clients, role assignments) and
``federation`` (LDAP settings). Called by ``api/routes_directory.py``; this package re-exports
each module's public names.
"""

from cellplane.identity.directory.bodies import (
    GRANT_TYPES,
    MIN_PASSWORD,
    TENANT_NAME,
    USER_NAME,
    AdminBody,
    AssignmentCreate,
    ClientCreate,
    GroupCreate,
    IsolationPolicy,
    LdapBody,
    TenantCreate,
    UserCreate,
    UserUpdate,
)
from cellplane.identity.directory.common import (
    assignment_view,
    client_view,
    group_view,
    tenant_view,
    user_view,
)
from cellplane.identity.directory.federation import (
    LDAP_CHECK_FAILED,
    LDAP_CHECK_FLOOR_S,
    LdapCheckFailed,
    delete_ldap,
    get_ldap,
    set_ldap,
)
from cellplane.identity.directory.groups import (
    add_member,
    create_assignment,
    create_client,
    create_group,
    delete_assignment,
    delete_client,
    delete_group,
    get_client,
    get_group,
    list_assignments,
    list_clients,
    list_groups,
    remove_member,
    rotate_client_secret,
)
from cellplane.identity.directory.tenants import (
    create_tenant,
    create_user,
    delete_tenant,
    delete_user,
    get_tenant,
    get_user,
    list_tenants,
    list_users,
    update_tenant,
    update_user,
)

__all__ = [
    "GRANT_TYPES",
    "LDAP_CHECK_FAILED",
    "LDAP_CHECK_FLOOR_S",
    "MIN_PASSWORD",
    "TENANT_NAME",
    "USER_NAME",
    "AdminBody",
    "AssignmentCreate",
    "ClientCreate",
    "GroupCreate",
    "IsolationPolicy",
    "LdapBody",
    "LdapCheckFailed",
    "TenantCreate",
    "UserCreate",
    "UserUpdate",
    "add_member",
    "assignment_view",
    "client_view",
    "create_assignment",
    "create_client",
    "create_group",
    "create_tenant",
    "create_user",
    "delete_assignment",
    "delete_client",
    "delete_group",
    "delete_ldap",
    "delete_tenant",
    "delete_user",
    "get_client",
    "get_group",
    "get_ldap",
    "get_tenant",
    "get_user",
    "group_view",
    "list_assignments",
    "list_clients",
    "list_groups",
    "list_tenants",
    "list_users",
    "remove_member",
    "rotate_client_secret",
    "set_ldap",
    "tenant_view",
    "update_tenant",
    "update_user",
    "user_view",
]
