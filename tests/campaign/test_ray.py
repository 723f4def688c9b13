"""The Ray backend on a real local Ray runtime gives the same ledger as running in process."""

import numpy as np
import pytest

from choral.campaign.backends import RayBackend, make_backend
from choral.campaign.config import CampaignConfig
from choral.campaign.ledger import Ledger
from choral.campaign.runner import run_campaign
from choral.errors import CampaignError

ray = pytest.importorskip("ray")


def simulator(X):
    """(1, 2) -> (1, 1); fails on part of the box so failures travel through Ray too."""
    if X[0, 1] > 0.8:
        raise ValueError("outside the solver's range")
    return np.cos(4 * X[:, :1]) * X[:, 1:]


def table(workdir):
    with Ledger(workdir / "ledger.db") as led:
        return led.table()


@pytest.fixture(scope="module")
def ray_runtime():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_ledger_equals_in_process(ray_runtime, tmp_path):
    cfg = CampaignConfig.from_dict({
        "bounds": [[0.0, 1.0], [0.0, 1.0]], "initial": 6, "batch_size": 3, "budget": 12,
        "candidates": 64, "seed": 3,
        "surrogate": {"model": {"hidden": [16]}, "train": {"members": 2, "epochs": 20}}})
    local = run_campaign(cfg, tmp_path / "local", simulator=simulator)
    backend = RayBackend(max_concurrency=2)
    in_flight = []  # runs still running when one finishes: at most 2 - 1 with two in flight
    fitted = run_campaign(cfg, tmp_path / "ray", simulator=simulator, backend=backend,
                          on_run=lambda c: in_flight.append(c["running"]))
    assert max(in_flight) == 1
    backend.close()  # ray was started by the fixture: the backend leaves it running
    assert ray.is_initialized()
    assert fitted["counts"] == local["counts"] and local["counts"]["failed"] >= 1
    assert table(tmp_path / "ray") == table(tmp_path / "local")
    a = Ledger(tmp_path / "ray/ledger.db").rounds()
    b = Ledger(tmp_path / "local/ledger.db").rounds()
    assert [r["scores"] for r in a] == [r["scores"] for r in b]  # the Ray fit is the same fit


def test_unknown_backend_is_named():
    with pytest.raises(CampaignError, match="'local' or 'ray', got 'dask'"):
        make_backend("dask")
