"""Cascade candidate scoring in a campaign: time per round, chosen batches, final error.

    python benchmarks/cascade_campaign.py [--candidates 20000] [--members 8] [--rounds 3]
                                          [--epochs 150] [--out FILE]

One borehole campaign (d = 8, ``acquisition = "variance"``, 24-run Sobol design, batches of 8,
``--rounds`` rounds, ``--candidates`` random candidates per round, an 8-member ensemble) per
setting: all members (the plain campaign), and cascades screening with the first ``k`` members
and re-scoring the top fraction ``f`` (:mod:`choral.campaign.screen`). Reported per setting:

- ``score_seconds``: time of one round's candidate scoring and batch choice
  (:func:`choral.campaign.screen.screen`), median of 5 repeats per round model, averaged over
  rounds; timed on the *plain* campaign's round models, so every setting scores the same models
  and candidates, and ``same_batch`` says per round whether its batch equals the plain one;
- the member forward-pass fraction;
- from the campaign run with that setting (seed 0): which rounds chose batches different from
  the plain campaign's (its own models, so later rounds differ once one batch does);
- ``final_rel_rmse`` per campaign seed 0 .. ``--seeds - 1`` and their mean: RMSE / std(Y) on
  2,000 test runs (``simulate("borehole", 2000, 123)``) of a surrogate fitted, with the
  campaign's settings, on all of that campaign's runs.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

SETTINGS = [None, (2, 1.0), (2, 0.1), (1, 0.1), (2, 0.02)]


def campaign(first_frac, args, seed: int = 0) -> dict:
    from choral.campaign.config import CampaignConfig

    values = {"simulator": {"builtin": "borehole"}, "initial": 24, "batch_size": 8,
              "budget": 24 + 8 * args.rounds, "candidates": args.candidates, "seed": seed,
              "surrogate": {"model": {"hidden": [64, 64]},
                            "train": {"members": args.members, "epochs": args.epochs}}}
    if first_frac is not None:
        values |= {"cascade_first": first_frac[0], "cascade_top_fraction": first_frac[1]}
    return CampaignConfig.from_dict(values)


def timed_scoring(cfg, workdir, first_frac) -> tuple[list[float], list[np.ndarray], float]:
    """Median seconds of :func:`screen` per round of the campaign in ``workdir``."""
    from choral.campaign.design import candidates
    from choral.campaign.ledger import Ledger
    from choral.campaign.runner import round_seed
    from choral.campaign.screen import screen
    from choral.surrogate import Surrogate

    with Ledger(workdir / "ledger.db") as led:
        rounds, rows = led.rounds()[1:], led.table()
    seconds, batches, fraction = [], [], 1.0
    for info in rounds:
        r, seed = info["round"], round_seed(cfg.seed, info["round"])
        model = Surrogate.load(workdir / info["model"])
        C = candidates(cfg.candidates, cfg.box(), seed)
        Y = np.array([row[4] for row in rows if row[1] < r])
        first, frac = first_frac or (None, 1.0)
        times = []
        for _ in range(5):
            t = time.perf_counter()
            out = screen(model.predict, model, C, cfg.acquisition, cfg.batch_size,
                         best=float(Y[:, 0].min()), maximize=False, seed=seed, first=first,
                         top_fraction=frac)
            times.append(time.perf_counter() - t)
        seconds.append(float(np.median(times)))
        batches.append(out.batch)
        fraction = out.fraction
    return seconds, batches, fraction


def final_error(cfg, workdir) -> float:
    from choral.campaign.ledger import Ledger
    from choral.simulators import simulate
    from choral.surrogate import Surrogate

    with Ledger(workdir / "ledger.db") as led:
        X, Y = led.data()
    model = Surrogate(cfg.surrogate_config().updated(**{"train.seed": 0})).fit(X, Y)
    Xt, Yt = simulate("borehole", 2000, 123)
    mean = model.predict(Xt).mean.cpu().numpy()
    return float(np.sqrt(np.mean((mean - Yt) ** 2)) / Yt.std())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=20000)
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    import torch

    from choral.campaign.ledger import Ledger
    from choral.campaign.runner import run_campaign

    torch.set_num_threads(1)
    root = tempfile.mkdtemp()
    dirs, errors, results, start = {}, {}, [], time.perf_counter()
    for setting in SETTINGS:
        name = "plain" if setting is None else f"k{setting[0]}_f{setting[1]}"
        cfg = campaign(setting, args)
        t = time.perf_counter()
        run_campaign(cfg, f"{root}/{name}")
        dirs[name] = (cfg, f"{root}/{name}", time.perf_counter() - t)
        errors[name] = [final_error(cfg, Path(f"{root}/{name}"))]
        for seed in range(1, args.seeds):
            other = campaign(setting, args, seed)
            run_campaign(other, f"{root}/{name}_{seed}")
            errors[name].append(final_error(other, Path(f"{root}/{name}_{seed}")))
    plain_cfg, plain_dir, _ = dirs["plain"]

    _, plain_batches, _ = timed_scoring(plain_cfg, Path(plain_dir), None)
    with Ledger(Path(plain_dir) / "ledger.db") as led:
        plain_rows = led.table()
    for setting in SETTINGS:
        name = "plain" if setting is None else f"k{setting[0]}_f{setting[1]}"
        cfg, d, campaign_s = dirs[name]
        seconds, batches, fraction = timed_scoring(cfg, Path(plain_dir), setting)
        with Ledger(Path(d) / "ledger.db") as led:
            rows = led.table()
        own_differs = [r for r in range(1, args.rounds + 1)
                       if [x[3] for x in rows if x[1] == r] != [x[3] for x in plain_rows
                                                               if x[1] == r]]
        results.append({
            "setting": name, "first": None if setting is None else setting[0],
            "top_fraction": None if setting is None else setting[1],
            "member_pass_fraction": round(fraction, 4),
            "score_seconds_per_round": round(float(np.mean(seconds)), 4),
            "same_batch_on_plain_models": [bool(np.array_equal(a, b))
                                           for a, b in zip(batches, plain_batches, strict=True)],
            "campaign_rounds_differing_from_plain": own_differs,
            "final_rel_rmse_per_seed": [round(e, 4) for e in errors[name]],
            "final_rel_rmse_mean": round(float(np.mean(errors[name])), 4),
            "campaign_seconds": round(campaign_s, 1)})
    out = {"benchmark": "cascade_campaign", "machine": f"{platform.machine()}, "
           f"{os.cpu_count()} cpus, torch {torch.__version__}", "args": vars(args),
           "results": results, "seconds": round(time.perf_counter() - start, 1)}
    text = json.dumps(out, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
