"""Members across a Ray cluster (``train.cluster = "ray"``, ``choral fit --backend ray``).

The members of a deep ensemble train independently, so they split into shards: each shard is
one Ray task that trains its members vectorised on one worker (one GPU each when the cluster
has GPUs), with a checkpoint of its own. The driver gathers the shards in member order into
one ensemble; a member's weights are the same numbers whichever shard trains it.

A task whose node dies is retried by Ray (``max_retries``) on another node and resumes from its
checkpoint, which must therefore lie on a filesystem every node sees (the fit's checkpoint
path; on one machine, any). Ray is imported only here, only when asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from choral.errors import ConfigError

__all__ = ["run_shards", "shard_members"]

RETRIES = 3
"""Times Ray reruns a shard whose worker or node died."""


def shard_members(members: int, shards: int) -> list[np.ndarray]:
    """Member indices of each of ``shards`` contiguous, near-equal shards (none empty).

    >>> [s.tolist() for s in shard_members(5, 2)]
    [[0, 1, 2], [3, 4]]
    """
    return [part for part in np.array_split(np.arange(members), min(shards, members))]


def _ray(address: str | None) -> tuple[Any, bool]:
    """The ray module, initialised (connecting to ``address`` or starting a local runtime);
    whether this call started it."""
    try:
        import ray
    except ImportError:
        raise ConfigError("train.cluster = 'ray' needs Ray: pip install 'choral[ray]'") from None
    if ray.is_initialized():
        return ray, False
    ray.init(address=address, include_dashboard=False, log_to_driver=False)
    return ray, True


def run_shards(task: Callable[..., Any], shared: Sequence[Any], members: int,
               args: Callable[[int, np.ndarray], tuple], shards: int | None = None,
               address: str | None = None, gpus: bool = False) -> list[Any]:
    """``task(*shared, *args(k, members_k))`` for every shard k as Ray tasks, in shard order.

    ``shards`` defaults to one per GPU of the cluster with ``gpus``, else one per CPU (never
    more than ``members``). ``shared`` arguments (the data) go to the object store once. Each
    task takes one CPU, or one GPU with ``gpus``, and is retried :data:`RETRIES` times if its
    worker or node dies.
    """
    ray, started = _ray(address)
    try:
        if shards is None:
            shards = max(1, int(ray.cluster_resources().get("GPU" if gpus else "CPU", 1)))
        resources = {"num_gpus": 1} if gpus else {"num_cpus": 1}
        remote = ray.remote(max_retries=RETRIES, retry_exceptions=False, **resources)(task)
        refs = [ray.put(a) for a in shared]
        parts = shard_members(members, shards)
        return ray.get([remote.remote(*refs, *args(k, part)) for k, part in enumerate(parts)])
    except ray.exceptions.RayTaskError as exc:  # the task's own error, not Ray's wrapper
        raise exc.as_instanceof_cause() from None
    finally:
        if started:
            ray.shutdown()


def threads() -> int:
    """The thread count the shards use: the driver's, so they compute the same numbers."""
    return torch.get_num_threads()
