"""Clusters from Serengeti (Big Data Extensions) specs: catalog, roles and the pure planner.

The clusters service and the cluster deploy executor import from here:
parse a spec (:func:`parse_spec`), load the catalog (:meth:`Catalog.load` over
:func:`default_catalog_paths`), plan (:func:`plan_cluster`), then render each
node's roles (:func:`render_role` over :func:`topology_from_plan`). Nothing in
this package touches cells or tasks; the executor does, on top of these pieces.
"""

from cellplane.clusters.catalog import (
    CATALOG_PATH_ENV,
    Catalog,
    CatalogSpec,
    Distro,
    DistroPackage,
    SpecMapEntry,
    default_catalog_paths,
)
from cellplane.clusters.configuration import merged_configuration
from cellplane.clusters.errors import (
    CatalogError,
    ClusterError,
    DependencyCycleError,
    FieldIssue,
    PlanError,
    ResizeError,
    RoleError,
    SpecError,
)
from cellplane.clusters.ordering import role_dependencies, start_order
from cellplane.clusters.planner import (
    DEFAULT_INSTANCE_TYPE,
    ClusterPlan,
    NodePlan,
    ResizeDiff,
    diff_for_resize,
    missing_requirements,
    node_name,
    plan_cluster,
    topology_from_plan,
)
from cellplane.clusters.roles import (
    Member,
    RenderedReadiness,
    RenderedRole,
    RoleDefinition,
    Topology,
    missing_binaries,
    render_role,
)
from cellplane.clusters.spec import (
    apply_overrides,
    export_spec,
    load_spec_file,
    parse_spec,
)
from cellplane.clusters.spec_model import ClusterSpec, NodeGroupSpec

__all__ = [
    "CATALOG_PATH_ENV",
    "DEFAULT_INSTANCE_TYPE",
    "Catalog",
    "CatalogError",
    "CatalogSpec",
    "ClusterError",
    "ClusterPlan",
    "ClusterSpec",
    "DependencyCycleError",
    "Distro",
    "DistroPackage",
    "FieldIssue",
    "Member",
    "NodeGroupSpec",
    "NodePlan",
    "PlanError",
    "RenderedReadiness",
    "RenderedRole",
    "ResizeDiff",
    "ResizeError",
    "RoleDefinition",
    "RoleError",
    "SpecError",
    "SpecMapEntry",
    "Topology",
    "apply_overrides",
    "default_catalog_paths",
    "diff_for_resize",
    "export_spec",
    "load_spec_file",
    "merged_configuration",
    "missing_binaries",
    "missing_requirements",
    "node_name",
    "parse_spec",
    "plan_cluster",
    "render_role",
    "role_dependencies",
    "start_order",
    "topology_from_plan",
]
