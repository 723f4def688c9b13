"""Wall time per epoch: vectorised ensembles (stacked matmul, vmap) against a loop of members.

Protocol (issue 2): an MLP surrogate with 2 hidden layers of 64, 5000 rows of 8 inputs, batch 128,
s in {1, 4, 8, 16}, all timed side by side in this one run, against one plain network (an
``nn.Module`` with AdamW, no stacking) of the same size. Prints one JSON object.

    python benchmarks/ensemble_speed.py [--epochs 3] [--repeats 3] [--device cuda]

Targets: the s=8 ensemble costs at most 2x one plain network, and is at least 3x faster than the
loop at s=8.

U-Net part (issue 3): a 2-D U-Net (depth 3, width 16) at 64x64, 64 samples per epoch, batch 8:
the s=4 ensemble stacked (grouped convolutions) and through vmap, against the loop of 4 members
and against one member (s=1, stacked). Target: s=4 costs at most 2.4x one member.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from functools import partial

import torch

from choral.config import TrainConfig
from choral.ensembles.training import train_members
from choral.networks import MLP, UNet
from choral.networks.heads import GaussianHead, gaussian_head, gaussian_nll
from choral.networks.members import init_members, member_forward

N, D, HIDDEN, BATCH = 5000, 8, [64, 64], 128


def plain_epochs(X, Y, epochs: int) -> None:
    """The reference: one ordinary network and optimiser, the usual PyTorch loop."""
    torch.manual_seed(0)
    net = MLP(D, 2, HIDDEN).to(X.device)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4, fused=True)
    for _ in range(epochs):
        for idx in torch.randperm(N).split(BATCH):
            mean, var = gaussian_head(net(X[idx]), 1e-6)
            loss = gaussian_nll(mean, var, Y[idx]).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


def ensemble_epochs(X, Y, s: int, backend: str, epochs: int, make=lambda: MLP(D, 2, HIDDEN),
                    batch: int = BATCH) -> None:
    """``s`` members through choral's trainer: together (stacked/vmap) or one by one (loop)."""
    cfg = TrainConfig(epochs=epochs, batch_size=batch, lr=1e-3)
    template, params = init_members(make, list(range(s)))
    params = {k: v.to(X.device) for k, v in params.items()}
    forward = member_forward(template, backend)
    if backend == "loop":
        for i in range(s):
            sub = {k: v[i:i + 1] for k, v in params.items()}
            train_members(forward, sub, X, Y, None, None, cfg, [i], GaussianHead().loss)
    else:
        train_members(forward, params, X, Y, None, None, cfg, list(range(s)), GaussianHead().loss)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()  # GPU work is asynchronous: time it to the end


def per_epoch(runs: dict, epochs: int, repeats: int) -> dict[str, float]:
    """Median seconds per epoch of each run, the runs interleaved so drift hits all alike."""
    for fn in runs.values():
        fn(1)  # warm-up
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            _sync()
            start = time.perf_counter()
            fn(epochs)
            _sync()
            times[name].append((time.perf_counter() - start) / epochs)
    return {name: sorted(t)[len(t) // 2] for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--no-unet", action="store_true", help="skip the U-Net part")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch intra-op threads (default: torch's)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:k")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    X, Y = (torch.randn(N, k, generator=g).to(args.device) for k in (D, 1))
    runs = {"plain": lambda e: plain_epochs(X, Y, e)}
    for s in args.sizes:
        for backend in ("stacked", "vmap", "loop"):
            runs[f"{backend}_{s}"] = partial(ensemble_epochs, X, Y, s, backend)
    t = per_epoch(runs, args.epochs, args.repeats)
    plain = t["plain"]
    rows = [{"s": s, "stacked_s": t[f"stacked_{s}"], "vmap_s": t[f"vmap_{s}"],
             "loop_s": t[f"loop_{s}"], "stacked_over_plain": t[f"stacked_{s}"] / plain,
             "vmap_over_plain": t[f"vmap_{s}"] / plain,
             "loop_over_stacked": t[f"loop_{s}"] / t[f"stacked_{s}"]} for s in args.sizes]
    at8 = next((r for r in rows if r["s"] == 8), None)
    result = {"benchmark": "ensemble_speed", "rows": N, "batch": BATCH, "hidden": HIDDEN,
              "threads": torch.get_num_threads(), "device": args.device,
              "machine": torch.cuda.get_device_name(args.device) if "cuda" in args.device else
              platform.processor() or platform.machine(), "plain_seconds_per_epoch": plain,
              "ensembles": rows}
    if at8:
        result["targets"] = {"s8_over_plain<=2": at8["stacked_over_plain"] <= 2,
                             "loop_over_s8>=3": at8["loop_over_stacked"] >= 3}
    if not args.no_unet:
        result["unet"] = unet_rows(args.epochs, args.repeats, args.device)
    print(json.dumps(result, indent=2))


def unet_rows(epochs: int, repeats: int, device: str) -> dict:
    g = torch.Generator().manual_seed(0)
    X, Y = (torch.randn(64, 1, 64, 64, generator=g).to(device) for _ in range(2))

    def make():
        return UNet(1, 2, dim=2, depth=3, width=16)

    runs = {"s1": partial(ensemble_epochs, X, Y, 1, "stacked", make=make, batch=8)}
    for backend in ("stacked", "vmap", "loop"):
        runs[backend] = partial(ensemble_epochs, X, Y, 4, backend, make=make, batch=8)
    t = per_epoch(runs, epochs, repeats)
    return {"grid": [64, 64], "samples": 64, "batch": 8, "s": 4, "seconds_per_epoch": t,
            "stacked_over_s1": t["stacked"] / t["s1"], "vmap_over_s1": t["vmap"] / t["s1"],
            "loop_over_s1": t["loop"] / t["s1"],
            "target_s4<=2.4x_s1": min(t["stacked"], t["vmap"]) / t["s1"] <= 2.4}


if __name__ == "__main__":
    main()
