"""Stacked ensemble members: independent initialisation and one forward for all members.

Members live as one dict of parameters with a leading member axis s (from
``torch.func.stack_module_state``). Three backends evaluate them:

- ``stacked``: the backbone's own ``forward_stacked`` (batched matmul or grouped convolution);
- ``vmap``: ``torch.func.vmap`` over ``functional_call`` for any functional ``nn.Module``;
- ``loop``: one ``functional_call`` per member, the fallback for modules ``vmap`` cannot handle.

``auto`` picks the first that works, in that order, unless the backbone names its faster one
(``auto_backend(device)``, e.g. :class:`~choral.networks.fno.FNOBackbone`).

Examples:
    >>> from choral.networks import MLP
    >>> template, params = init_members(lambda: MLP(3, 2, [8]), seeds=[1, 2])
    >>> params["layers.0.weight"].shape
    torch.Size([2, 8, 3])
    >>> forward = member_forward(template, choose_backend(template, "auto"))
    >>> forward(params, torch.zeros(2, 5, 3)).shape
    torch.Size([2, 5, 2])
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

Forward = Callable[[dict[str, Tensor], Tensor], Tensor]
BACKENDS = ("stacked", "vmap", "loop")


def init_members(make: Callable[[], nn.Module], seeds: Sequence[int],
                 dtype: torch.dtype = torch.float32) -> tuple[nn.Module, dict[str, Tensor]]:
    """Build one network per seed and stack their parameters: each (s, ...).

    Member ``i`` is initialised under ``torch.manual_seed(seeds[i])`` with the global RNG state
    restored afterwards, so the same seed gives the same member whatever the backend.
    """
    nets = []
    with torch.random.fork_rng(devices=[]):
        for seed in seeds:
            torch.manual_seed(int(seed))
            nets.append(make().to(dtype))
    params, buffers = stack_module_state(nets)
    if buffers:
        raise NotImplementedError("backbones with buffers (e.g. BatchNorm) are not supported yet")
    template = copy.deepcopy(nets[0]).to("meta")
    return template, {k: v.detach() for k, v in params.items()}


def choose_backend(template: nn.Module, requested: str = "auto",
                   probe: Tensor | None = None) -> str:
    """The backend to use: ``requested`` if not ``auto``; else the fastest that runs ``probe``."""
    if requested != "auto":
        if requested not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS} or 'auto', got {requested!r}")
        return requested
    if hasattr(template, "forward_stacked"):
        return "stacked"
    if hasattr(template, "auto_backend"):  # the backbone knows which is faster (measured)
        return template.auto_backend(None if probe is None else probe.device)
    if probe is None:
        return "vmap"
    try:
        params = {k: torch.zeros((2, *p.shape), dtype=probe.dtype, device=probe.device)
                  for k, p in template.named_parameters()}
        member_forward(template, "vmap")(params, probe.expand(2, *probe.shape))
        return "vmap"
    except Exception:  # noqa: BLE001 - any failure of vmap means: use the loop
        return "loop"


def member_forward(template: nn.Module, backend: str) -> Forward:
    """A function ``(params (s, ...), x (s, b, ...)) -> out (s, b, ...)`` for ``backend``."""
    if backend == "stacked":
        return template.forward_stacked

    def single(p: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(template, p, (x,))

    if backend == "vmap":
        return vmap(single)

    def loop(params: dict[str, Tensor], x: Tensor) -> Tensor:
        s = next(iter(params.values())).shape[0]
        return torch.stack([single({k: v[i] for k, v in params.items()}, x[i]) for i in range(s)])

    return loop


def own_storage(params: dict[str, Tensor]) -> dict[str, Tensor]:
    """Each tensor of ``params`` detached and copied into its own new contiguous allocation.

    The CPU kernels of matrix products (oneDNN/MKL, AVX2 or AVX-512) choose their loop peeling
    and hence their summation order by the address alignment of their operands. Weights that are
    views into a larger buffer (a safetensors file read back, a slice of a flat vector, one
    member taken from a stack) sit at arbitrary offsets, so the same numbers can round
    differently. torch's allocator aligns every new allocation to 64 bytes: giving each tensor
    its own (fitted, merged or loaded alike) makes every path run the same kernel, bit for bit.

    >>> buf = torch.arange(10.0)
    >>> own = own_storage({"w": buf[1:5]})["w"]
    >>> own.data_ptr() % 64, own.tolist()
    (0, [1.0, 2.0, 3.0, 4.0])
    """
    return {k: v.detach().clone(memory_format=torch.contiguous_format)
            for k, v in params.items()}


def predict_members(forward: Forward, params: dict[str, Tensor], x: Tensor,
                    chunk: int = 8192) -> Tensor:
    """Every member on the same inputs ``x`` (n, ...) -> (s, n, ...), in chunks of rows."""
    s = next(iter(params.values())).shape[0]
    with torch.no_grad():
        outs = [forward(params, xb.expand(s, *xb.shape)) for xb in x.split(chunk)]
    return torch.cat(outs, dim=1)
