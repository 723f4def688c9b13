"""Members across a real two-node Ray cluster (``train.cluster = "ray"``): the gathered
ensemble equals a one-process fit with the same seed, bit for bit, even when a node dies
mid-fit (Ray reruns its shard on the other node, which resumes from the shard's checkpoint).
"""

import threading
import time

import numpy as np
import pytest
import torch

from choral.config import Config
from choral.errors import ConfigError
from choral.simulators import simulate
from choral.surrogate import Surrogate
from choral.surrogate.shards import shard_members

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

# no early stop: each shard trains for seconds, long enough to be killed mid-fit
SETTINGS = {"train.members": 4, "train.epochs": 400, "train.patience": 400,
            "train.checkpoint_seconds": 0.1, "model.hidden": [16], "train.seed": 2}


@pytest.fixture(scope="module")
def data():
    return simulate("borehole", 300, seed=0)


@pytest.fixture
def cluster():
    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker = nodes.add_node(num_cpus=1)
    nodes.wait_for_nodes()
    ray.init(address=nodes.address, include_dashboard=False, log_to_driver=False)
    yield nodes, worker
    ray.shutdown()
    nodes.shutdown()


def _training(shard):
    """Whether a shard's checkpoint shows it training (started, not finished)."""
    if not shard.exists():
        return False
    saved = torch.load(shard, map_location="cpu", weights_only=True)
    assert not saved["done"], f"{shard.name} finished before the other shard started"
    return saved["current"] is not None


def test_shards_are_contiguous_and_cover_every_member():
    parts = shard_members(7, 3)
    assert np.concatenate(parts).tolist() == list(range(7)) and len(parts) == 3
    assert len(shard_members(2, 5)) == 2


def test_a_node_killed_mid_fit_loses_nothing(cluster, data, tmp_path):
    nodes, worker = cluster
    X, Y = data
    reference = Surrogate(Config().updated(**SETTINGS)).fit(X, Y)
    sharded = Surrogate(Config().updated(**SETTINGS, **{"train.cluster": "ray",
                                                        "train.shards": 2}))
    checkpoint = tmp_path / "fit.checkpoint"
    fit = threading.Thread(target=sharded.fit, args=(X, Y), kwargs={"checkpoint": checkpoint})
    fit.start()
    shards = [tmp_path / f"fit.checkpoint.shard{k}" for k in range(2)]
    deadline = time.monotonic() + 120
    while not all(_training(s) for s in shards):  # both shards mid-training, on either node
        assert time.monotonic() < deadline and fit.is_alive(), "the shards were never both training"
        time.sleep(0.05)
    nodes.remove_node(worker, allow_graceful=False)  # its shard dies with it mid-training
    fit.join(timeout=300)
    assert not fit.is_alive()
    assert sharded.resumed  # the rerun shard went on from its checkpoint
    assert not any(s.exists() for s in shards) and not checkpoint.exists()
    for k, want in reference.params.items():
        assert torch.equal(sharded.params[k], want), k
    assert sharded.metrics["best_epoch"] == reference.metrics["best_epoch"]
    assert sharded.metrics["best_val_nll"] == reference.metrics["best_val_nll"]


def test_only_the_deep_ensemble_is_sharded(data):
    X, Y = data
    cfg = Config().updated(**{"train.cluster": "ray", "train.ensemble": "swa"})
    with pytest.raises(ConfigError, match="train.ensemble must be 'deep'; got 'swa'"):
        Surrogate(cfg).fit(X, Y)
