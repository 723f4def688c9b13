"""The campaign loop: run what is pending, fit, propose the next batch, repeat; resumable.

Round 0 is the initial design. Round ``r >= 1`` fits a surrogate on every done run (seeded by the
campaign seed and ``r``; with ``refit = "warm"`` continuing from round ``r - 1``'s saved model),
saves it to ``models/round_r`` and proposes its batch from candidates
seeded the same way, so a campaign is a function of its config, and a resumed campaign (which
reloads a saved round model rather than refitting it) makes the same choices as one that never
stopped.

>>> import tempfile
>>> cfg = CampaignConfig.from_dict({"simulator": {"builtin": "branin"}, "initial": 4,
...     "batch_size": 2, "budget": 6, "candidates": 32,
...     "surrogate": {"model": {"hidden": [8]}, "train": {"members": 2, "epochs": 3}}})
>>> run_campaign(cfg, tempfile.mkdtemp())["counts"]
{'pending': 0, 'running': 0, 'done': 6, 'failed': 0}
"""

from __future__ import annotations

import fcntl
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

from choral.campaign.backends import LocalBackend, RayBackend
from choral.campaign.config import CampaignConfig
from choral.campaign.design import candidates, initial_design
from choral.campaign.ledger import Ledger
from choral.campaign.posterior import batch_within, posterior_set, surrogate_log_likelihood
from choral.campaign.screen import Screened, screen
from choral.campaign.simulator import Outcome, Simulation
from choral.config import Config
from choral.errors import CampaignError
from choral.surrogate import Surrogate

Log = Callable[[str], None]


def round_seed(seed: int, r: int) -> int:
    """A seed for round ``r`` of a campaign seeded ``seed``.

    >>> round_seed(0, 1) == round_seed(0, 1) != round_seed(0, 2)
    True
    """
    return int(np.random.SeedSequence([seed, r]).generate_state(1)[0])


def fit_round(config: Config, X: np.ndarray, Y: np.ndarray, out_dir: str,
              warm_from: str | None = None) -> str:
    """Fit a surrogate on ``X`` (n, d), ``Y`` (n, m) and save it to ``out_dir`` (a Ray task
    too); with ``warm_from`` (a saved round model) training continues from its members."""
    warm = None if warm_from is None else Surrogate.load(warm_from)
    Surrogate(config).fit(X, Y, warm_start=warm).save(out_dir)
    return out_dir


def run_campaign(cfg: CampaignConfig, workdir: str | Path, *,
                 simulator: Callable[[np.ndarray], np.ndarray] | None = None,
                 backend: LocalBackend | RayBackend | None = None,
                 log: Log | None = None,
                 on_run: Callable[[dict[str, int]], None] | None = None) -> dict[str, Any]:
    """Run (or resume) the campaign ``cfg`` whose ledger and files live in ``workdir``.

    ``simulator`` (a Python callable ``f(X (1, d)) -> Y (1, m)``) overrides ``[simulator]``.
    ``log`` gets one line per event, ``on_run`` the run counts after each run. Returns a summary:
    ``counts``, ``rounds``, ``recovered`` and the ``stop`` reason.
    """
    workdir = Path(workdir).resolve()
    log = log or _quiet
    with _lock(workdir), Ledger(workdir / "ledger.db") as ledger:
        ledger.bind("config", cfg.model_dump(mode="json"))
        recovered = ledger.recover()
        if any(recovered.values()):
            log(f"recovered after a crash: {recovered['running']} in-flight and "
                f"{recovered['corrupt']} damaged runs will run again")
        loop = _Loop(cfg, workdir, ledger, Simulation.from_config(cfg.simulator, simulator),
                     backend or LocalBackend(), log, on_run)
        stop = loop.run()
        return {"counts": ledger.counts(), "rounds": len(ledger.rounds()),
                "recovered": recovered, "stop": stop}


def _lock(workdir: Path) -> IO:
    """An exclusive lock on ``workdir`` for this process (the OS drops it if the process dies),
    so two runs never share a ledger: one would take the other's running runs for crashed."""
    workdir.mkdir(parents=True, exist_ok=True)
    fh = open(workdir / "lock", "w")  # held until the campaign returns
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise CampaignError(f"another `choral campaign run` is working in {workdir}; wait for "
                            "it to finish (or stop it) before starting this one") from None
    return fh


def _quiet(_: str) -> None:
    pass


class _Loop:
    def __init__(self, cfg, workdir, ledger, simulation, backend, log, on_run) -> None:
        self.cfg, self.workdir, self.ledger = cfg, workdir, ledger
        self.simulation, self.backend, self.log, self.on_run = simulation, backend, log, on_run
        self.box = cfg.box()

    def run(self) -> str:
        while True:
            self._run_pending()
            rounds = self.ledger.rounds()
            if rounds and "stop" in rounds[-1]["scores"]:
                return rounds[-1]["scores"]["stop"]
            stop = self._stop_reason(len(rounds))
            if stop is not None:
                self.log(f"campaign finished: {stop}")
                return stop
            if not rounds:
                n = min(self.cfg.initial, self.cfg.budget)
                self.ledger.add_round(0, initial_design(self.cfg.design, n, self.box,
                                                        self.cfg.seed))
                self.log(f"round 0: {self.cfg.design} initial design of {n} runs")
            else:
                self._propose(len(rounds))

    def _stop_reason(self, r: int) -> str | None:
        counts = self.ledger.counts()
        if sum(counts.values()) >= self.cfg.budget:
            return f"budget of {self.cfg.budget} runs spent"
        if r > 0 and self.cfg.stop.max_rounds is not None and r > self.cfg.stop.max_rounds:
            return f"max_rounds = {self.cfg.stop.max_rounds} reached"
        if r > 0 and counts["done"] < 2:  # counted, not read: runs() loads every output
            return "fewer than 2 runs succeeded: nothing to fit (see the failed runs' errors)"
        return None

    def _run_pending(self) -> None:
        pending = [(run.id, run.x) for run in self.ledger.runs("pending")]
        if pending:
            self.backend.run(self.simulation, pending, self.ledger.start, self._finish,
                             self.workdir / "runs")

    def _finish(self, run_id: int, outcome: Outcome) -> None:
        if outcome.error is None:
            self.ledger.finish(run_id, outcome.y, outcome.seconds)
        else:
            self.ledger.fail(run_id, outcome.error, outcome.seconds)
            self.log(f"run {run_id} failed: {outcome.error}")
        if self.on_run is not None:
            self.on_run(self.ledger.counts())

    def _propose(self, r: int) -> None:
        cfg, seed = self.cfg, round_seed(self.cfg.seed, r)
        X, Y = self.ledger.data()
        model = self._model(r, X, Y, seed)
        C = candidates(cfg.candidates, self.box, seed)
        values = cfg.values(Y)
        best = float(values.max() if cfg.maximize else values.min())
        k = min(cfg.batch_size, cfg.budget - sum(self.ledger.counts().values()))
        if cfg.acquisition == "posterior":
            chosen, posterior_size = self._posterior(model, C, k, seed)
        else:
            chosen = screen(model.predict, model, C, cfg.acquisition, k, best=best,
                            maximize=cfg.maximize, seed=seed, first=cfg.cascade_first,
                            objective=cfg.objective_fn(),
                            top_fraction=cfg.cascade_top_fraction)
        scores = {"n_train": len(X), "max_std": float(chosen.std.max()),
                  "mean_std": float(chosen.std.mean()), "best": best,
                  "val_nll": _mean(model.metrics.get("best_val_nll")),
                  "member_passes": chosen.forward_passes,
                  "member_pass_fraction": chosen.fraction}
        if cfg.acquisition == "posterior":
            scores["posterior_set"] = posterior_size
        rel = str(Path("models") / f"round_{r}")
        if scores["max_std"] < cfg.stop.target_std:
            scores["stop"] = (f"largest predictive std {scores['max_std']:.4g} is below "
                              f"target_std = {cfg.stop.target_std:g}")
            self.ledger.add_round(r, np.zeros((0, len(self.box))), rel, scores)
            self.log(f"campaign finished: {scores['stop']}")
            return
        self.ledger.add_round(r, chosen.batch, rel, scores)
        self.log(f"round {r}: fitted on {len(X)} runs (max std {scores['max_std']:.4g}, "
                 f"best {best:.4g}); proposed {k} runs with "
                 f"{chosen.fraction:.0%} of the member forward passes")

    def _posterior(self, model: Surrogate, C: np.ndarray, k: int,
                   seed: int) -> tuple[Screened, int]:
        """``acquisition = "posterior"``: the batch (k, d) among the candidates ``C`` (q, d)
        holding ``[inference] mass`` of the surrogate posterior, and how many those are."""
        inf = self.cfg.inference
        pred = model.predict(C)
        log_lik = surrogate_log_likelihood(model, inf.observed, inf.noise)
        keep, _ = posterior_set(log_lik, C, k, inf.mass)
        batch = C[batch_within(keep, model.predict, C, k, seed=seed)]
        passes = pred.members()[2].shape[0] * len(C)
        return Screened(batch, pred.stddev.cpu().numpy(), passes, passes), len(keep)

    def _model(self, r: int, X: np.ndarray, Y: np.ndarray, seed: int) -> Surrogate:
        out = self.workdir / "models" / f"round_{r}"
        if not (out / "weights.safetensors").is_file():  # saved whole or not at all (atomic)
            config = self.cfg.surrogate_config().updated(**{"train.seed": seed % 2**31})
            prev = self.workdir / "models" / f"round_{r - 1}"
            warm = self.cfg.refit == "warm" and (prev / "weights.safetensors").is_file()
            if warm:
                epochs = max(1, round(self.cfg.warm_fraction * config.train.epochs))
                config = config.updated(**{"train.epochs": epochs})
            self.backend.fit(fit_round, config, X, Y, str(out), str(prev) if warm else None)
        return Surrogate.load(out)


def _mean(values: Any) -> float | None:
    return float(np.mean(values)) if values else None
