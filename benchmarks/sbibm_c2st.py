"""C2ST of choral's amortised NPE (an ensemble of zuko flows) against sbi 0.27's NPE on sbibm.

    PYTHONPATH=. python benchmarks/sbibm_c2st.py [--tasks two_moons gaussian_linear slcp]
        [--sims 1000] [--observations 1 2 3] [--samples 10000] [--members 5] [--out FILE]

For each task: ``--sims`` (theta, x) pairs drawn once from sbibm's prior and simulator (seed 0);
sbi's NPE (its defaults: MAF, 5 transforms of 50 hidden units, batch 200, lr 5e-4, 10%
validation, stop after 20 epochs without improvement) and choral's :func:`fit_npe` (``--members``
NSF flows with sbi's sizes and training rule, mixed equally) trained on the *same* pairs; then
for each observation ``--samples`` posterior draws of each method against the reference
posterior samples shipped with sbibm, scored by sbibm's C2ST (its code: an MLP classifier with
two layers of 10 d units, 5-fold cross-validated accuracy on z-scored samples; 0.5 is perfect).
sbibm's ``metrics`` package is loaded from its file (its ``__init__`` needs a package that is
not installed). SBC on gaussian_linear: ``--sbc`` problems from the prior, 99 draws each, rank
uniformity by a chi-square test per dimension. ``--nle``: sbi's NLE on the same pairs too, its
posterior sampled by sbibm's MCMC settings (slow). Prints one JSON object.

The published protocol is 10 observations at 1k, 10k and 100k simulations; what runs here is
reduced (see RESULTS.md), and the published NPE figures (sbibm 2021) are printed beside.
sbi comes with the ``bench`` extra; sbibm is installed with ``pip install --no-deps
sbibm==1.1.0`` (its own requirements pin old packages; the tasks used here need none of them).
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from _report import emit  # run as a script: benchmarks/ is on sys.path

from choral.inference import coverage, fit_npe, rank_uniformity, sbc_ranks

C2ST_FILE = "sbibm/metrics/c2st.py"


def load_c2st():
    import sbibm

    path = Path(sbibm.__file__).parent / "metrics" / "c2st.py"
    spec = importlib.util.spec_from_file_location("sbibm_c2st", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.c2st


def published(task: str) -> dict:
    path = Path(__file__).resolve().parents[2] / "shared" / "reference" / "sbibm_npe_c2st.csv"
    if not path.exists():
        path = Path("/work/shared/reference/sbibm_npe_c2st.csv")
    with open(path) as fh:
        rows = [r for r in csv.reader(line for line in fh if not line.startswith("#"))]
    header, *rows = rows
    return {r[1]: dict(zip(header[2:], map(float, r[2:]), strict=True)) for r in rows
            if r[0] == task}


def run_sbi(prior, theta, x, seed: int, method: str = "npe"):
    """sbi's NPE, or its NLE with sbibm's MCMC settings (vectorised slice sampling, 100
    chains, 25 warmup steps, thinning 10, chains started by resampling prior draws)."""
    import tempfile

    from sbi.inference import NLE, NPE
    from torch.utils.tensorboard import SummaryWriter

    torch.manual_seed(seed)  # sbi's training logs go to a temporary folder, not ./sbi-logs
    writer = SummaryWriter(log_dir=tempfile.mkdtemp(prefix="sbi-logs-"))
    trainer = NPE if method == "npe" else NLE
    inference = trainer(prior=prior, show_progress_bars=False, summary_writer=writer)
    estimator = inference.append_simulations(theta.float(), x.float()).train()
    if method == "npe":
        return inference.build_posterior(estimator)
    return inference.build_posterior(
        estimator, mcmc_method="slice_np_vectorized",
        mcmc_parameters={"num_chains": 100, "warmup_steps": 25, "thin": 10,
                         "init_strategy": "resample"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["two_moons", "gaussian_linear", "slcp"])
    parser.add_argument("--sims", type=int, default=1000)
    parser.add_argument("--observations", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--samples", type=int, default=10000)
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--sbc", type=int, default=300)
    parser.add_argument("--nle", action="store_true", help="also sbi's NLE (MCMC: slow)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    import sbibm

    c2st = load_c2st()
    report = {"sims": args.sims, "observations": args.observations, "samples": args.samples,
              "members": args.members, "threads": torch.get_num_threads(),
              "omp": os.environ.get("OMP_NUM_THREADS"), "tasks": {}}
    for name in args.tasks:
        task = sbibm.get_task(name)
        prior_dist = task.get_prior_dist()
        torch.manual_seed(0)
        theta = task.get_prior()(num_samples=args.sims)
        x = task.get_simulator()(theta)
        start = time.perf_counter()
        sbi_post = run_sbi(prior_dist, theta, x, seed=0)
        sbi_seconds = time.perf_counter() - start
        start = time.perf_counter()
        ours = fit_npe(theta.double(), x.double(), members=args.members, seed=0,
                       support=prior_dist.support)
        ours_seconds = time.perf_counter() - start
        if args.nle:
            start = time.perf_counter()
            nle_post = run_sbi(prior_dist, theta, x, seed=0, method="nle")
            nle_seconds = time.perf_counter() - start
        rows = []
        for k in args.observations:
            obs = task.get_observation(num_observation=k)[0]
            ref = task.get_reference_posterior_samples(num_observation=k)[:args.samples]
            torch.manual_seed(k)
            sbi_draws = sbi_post.sample((args.samples,), x=obs, show_progress_bars=False)
            our_draws = ours.sample(args.samples, obs.double(), seed=k).float()
            rows.append({"observation": k,
                         "sbi_npe": float(c2st(ref, sbi_draws)[0]),
                         "choral_npe": float(c2st(ref, our_draws)[0])})
            if args.nle:
                start = time.perf_counter()
                nle_draws = nle_post.sample((args.samples,), x=obs, show_progress_bars=False)
                rows[-1]["sbi_nle"] = float(c2st(ref, nle_draws)[0])
                rows[-1]["sbi_nle_sample_seconds"] = round(time.perf_counter() - start, 1)
            print(json.dumps({name: rows[-1]}), flush=True)
        methods = ("sbi_npe", "choral_npe") + (("sbi_nle",) if args.nle else ())
        entry = {"train_seconds": {"sbi_npe": round(sbi_seconds, 1),
                                   "choral_npe": round(ours_seconds, 1),
                                   **({"sbi_nle": round(nle_seconds, 1)} if args.nle else {})},
                 "per_observation": rows,
                 "mean": {m: float(np.mean([r[m] for r in rows])) for m in methods},
                 "published_npe_mean_10_obs": published(name).get("NPE", {})}
        if name == "gaussian_linear" and args.sbc:
            torch.manual_seed(100)
            th = task.get_prior()(num_samples=args.sbc)
            xs = task.get_simulator()(th)
            draws = np.stack([ours.sample(99, xs[i].double(), seed=1000 + i).numpy()
                              for i in range(args.sbc)])
            ranks = sbc_ranks(draws, th.numpy())
            p = rank_uniformity(ranks, 99, bins=10)
            entry["sbc"] = {"problems": args.sbc, "draws": 99, "bins": 10,
                            "chi2_pvalues": p.round(4).tolist(),
                            "min_pvalue_bonferroni": float(min(1.0, p.min() * len(p))),
                            "coverage_90": coverage(draws, th.numpy(), [0.9])[0].round(3)
                            .tolist()}
            entry["sbc"]["passed_at_0.05"] = entry["sbc"]["min_pvalue_bonferroni"] > 0.05
        report["tasks"][name] = entry
        print(json.dumps({name: {k: v for k, v in entry.items() if k != "per_observation"}}),
              flush=True)
    emit(report, args.out)


if __name__ == "__main__":
    main()
