"""The one place graphrec connects to Ray (``GRAPHREC_ENGINE=ray``): the cluster at ``GRAPHREC_RAY_ADDRESS``, else a
local Ray started on demand in this process, bounded by ``GRAPHREC_RAY_NUM_CPUS`` and ``GRAPHREC_RAY_OBJECT_STORE_MB``.

Ray is imported only when a job asks for it, so the local engine and serving never load it. A running Ray (started
by an earlier job of the process, or by the caller) is reused as it is.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from types import ModuleType

from graphrec.settings import Settings

MIB = 2**20
CONNECT_TIMEOUT_S = 5.0


class RayUnavailable(RuntimeError):
    """The configured Ray cluster could not be joined."""


@dataclass(frozen=True)
class RayTarget:
    """Where to run: a cluster address (None: a local Ray), and the local Ray's CPUs and object store (MiB)."""

    address: str | None = None
    num_cpus: int | None = None
    object_store_mb: int | None = None


def _check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Fail fast, naming the address, when nothing listens at a ``host:port`` (or ``ray://host:port``) address:
    ``ray.init`` itself retries an unreachable cluster for minutes. ``auto`` (Ray's own lookup) is not probed."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise RayUnavailable(f"GRAPHREC_RAY_ADDRESS {address!r} is not host:port (e.g. 10.0.0.5:6379) or 'auto'")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as error:
        raise RayUnavailable(
            f"no Ray cluster answers at {address!r} (GRAPHREC_RAY_ADDRESS): {error}; start one with "
            "`ray start --head`, or unset GRAPHREC_RAY_ADDRESS to run a local Ray"
        ) from error


def ray_target(settings: Settings) -> RayTarget:
    """Where ``settings`` say Ray runs (GRAPHREC_RAY_ADDRESS, GRAPHREC_RAY_NUM_CPUS, GRAPHREC_RAY_OBJECT_STORE_MB)."""
    return RayTarget(settings.ray_address, settings.ray_num_cpus, settings.ray_object_store_mb)


def ray_connected(target: RayTarget) -> ModuleType:
    """The ``ray`` module, initialised for ``target`` unless Ray already is; :class:`RayUnavailable` naming the
    address when the cluster cannot be joined."""
    import ray

    if ray.is_initialized():
        return ray
    options: dict[str, object] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
    if target.address is not None:
        _check_reachable(target.address)
        try:
            ray.init(address=target.address, **options)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise RayUnavailable(
                f"cannot join the Ray cluster at {target.address!r} (GRAPHREC_RAY_ADDRESS): {error}"
            ) from error
        return ray
    if target.num_cpus is not None:
        options["num_cpus"] = target.num_cpus
    if target.object_store_mb is not None:
        options["object_store_memory"] = target.object_store_mb * MIB
    ray.init(**options)
    return ray


def cluster_cpus(ray: ModuleType) -> int:
    """CPUs of the joined cluster (at least 1): how many partitions keep every core busy."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)))
