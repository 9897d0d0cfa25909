"""The cluster executor: turns a cluster's pending operation into cells, probes and states.

A controller like the placement loop, started in the server process by
:mod:`cellplane.controller.runtime`. It reads catalog and plans from the pure
:mod:`cellplane.clusters` package and acts through the services (cells, volumes, tasks).
Split by concern, as one class chain (each module extends the one before it):

- :mod:`.records`: the operation context, task steps, node and cluster rows;
- :mod:`.readiness`: commands in a node's cell through its host agent, readiness probes;
- :mod:`.nodes`: node lifecycle (cell, data volume, bring-up, delete);
- :mod:`.operations`: CREATE/RESUME, DELETE, STOP, START, RESIZE, CONFIG;
- :mod:`.health`: the health pass (a node lost behind Cellplane's back) and HEAL;
- :mod:`.leaders`: the leader pass (which node leads a role that elects one: Patroni);
- :mod:`.loop`: :class:`ClusterExecutor` and :func:`run_cluster_executor`;
- :mod:`.supervisor`: the pure payload a node's cell runs (bundle, role scripts, probes).

Data volumes: a node with a disk size whose roles declare a ``data_dir`` gets one volume of the
node's disk size, named ``<node>-data`` (:func:`cellplane.clusters.planner.data_volume_name`),
in the cluster's project, mounted at that ``data_dir`` (:func:`~cellplane.clusters.planner.
node_volume`). Volumes have no labels: a cluster's volumes are found by that name from its node
list. An existing volume of the name is reused, so a node recreated by ``resume``, ``start`` or a
retry keeps its data (and a cluster re-created under the same name adopts volumes kept by
``DELETE ?keepVolumes=true``). Deleting the cluster deletes its nodes' volumes once their cells
are gone, unless ``keepVolumes`` is set; a scale-in always deletes the removed nodes' volumes.
"""

from cellplane.controller.clusters.loop import ClusterExecutor, run_cluster_executor
from cellplane.controller.clusters.records import (
    NodeFailure,
    failure_message,
    filtered_topology,
    flavors_of,
    set_step,
)

__all__ = [
    "ClusterExecutor",
    "NodeFailure",
    "failure_message",
    "filtered_topology",
    "flavors_of",
    "run_cluster_executor",
    "set_step",
]
