"""TALL masks and consensus merging (Wang et al. 2024, "Localizing task information").

Given task vectors ``tau_t`` (T, s, ...) and a merged multi-task vector ``tau_MTL`` (s, ...)
(task arithmetic's sum, or TIES'), the mask of regime ``t`` keeps the weights where that regime's
own change outweighs what the others add there,

    ``m_t = 1{|tau_t| >= lambda_t |tau_MTL - tau_t|}``,

and ``theta_0 + m_t * tau_MTL`` approximates the fine-tune of regime ``t``: one merged vector
plus one bit per weight and regime replace T fine-tuned copies. ``lambda_t`` is chosen per regime
on its validation data (the paper's grid is 0.2 .. 0.6).

Consensus merging keeps only the weights that at least ``k`` regimes' masks use (``k = 2``
drops both "selfish" weights, used by one regime, and "catastrophic" ones, used by none):
``tau = 1{sum_t m_t >= k} * tau_MTL``, merged as ``theta_0 + lambda tau``.

Masks are stored packed, 8 per byte (:func:`pack_masks`), in a safetensors record.

Examples:
    >>> import torch
    >>> taus = {"w": torch.tensor([[[1.0, 0.0, 2.0]], [[0.0, 1.0, 2.0]]])}
    >>> merged = {"w": taus["w"].sum(0)}                          # [[1, 1, 4]]
    >>> masks = tall_masks(taus, merged, [1.0, 1.0])
    >>> masks["w"].int().tolist()
    [[[1, 0, 1]], [[0, 1, 1]]]
    >>> consensus(taus, merged, [1.0, 1.0], k=2)["w"].tolist()
    [[0.0, 0.0, 4.0]]
    >>> packed = pack_masks(masks)
    >>> packed["w"].dtype, torch.equal(unpack_masks(packed, merged, 2)["w"], masks["w"])
    (torch.uint8, True)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from choral.checks import check_int
from choral.ensembles.merging.vectors import per_regime, regime_weights
from choral.ensembles.params import Params
from choral.errors import ConfigError, DataError

__all__ = ["consensus", "consensus_mask", "pack_masks", "read_record", "regime_params",
           "select_regime", "tall_masks", "to_record", "unpack_masks"]

_BITS = (128, 64, 32, 16, 8, 4, 2, 1)


def tall_masks(taus: Params, merged: Params, lambdas: Sequence[float] | Tensor) -> Params:
    """Boolean masks (T, s, ...): ``|tau_t| >= lambda_t |merged - tau_t|`` (``lambdas`` (T,))."""
    lam = regime_weights(taus, lambdas)
    return {k: v.abs() >= per_regime(lam, v) * (merged[k].unsqueeze(0) - v).abs()
            for k, v in taus.items()}


def consensus_mask(masks: Params, k: int = 2) -> Params:
    """Boolean (s, ...): the weights that at least ``k`` of the T masks (T, s, ...) keep."""
    check_int(k, "k", minimum=0)
    return {name: m.sum(0) >= k for name, m in masks.items()}


def consensus(taus: Params, merged: Params, lambdas: Sequence[float] | Tensor,
              k: int = 2) -> Params:
    """The consensus vector (s, ...): ``merged`` where at least ``k`` TALL masks keep it."""
    keep = consensus_mask(tall_masks(taus, merged, lambdas), k)
    return {name: v * keep[name] for name, v in merged.items()}


def regime_params(base: Params, merged: Params, masks: Params, t: int) -> Params:
    """Regime ``t``'s ensemble (s, ...): ``base + masks[t] * merged``."""
    return {k: v + masks[k][t] * merged[k] for k, v in base.items()}


def pack_masks(masks: Params) -> Params:
    """Boolean masks (T, s, ...) as uint8 (T, ceil(s * P / 8)): 8 bits per byte, first bit
    highest, the last byte padded with zeros (as ``numpy.packbits``)."""
    out = {}
    for k, m in masks.items():
        bits = m.reshape(m.shape[0], -1).to(torch.uint8)
        pad = (-bits.shape[1]) % 8
        bits = torch.nn.functional.pad(bits, (0, pad)).reshape(m.shape[0], -1, 8)
        weights = torch.tensor(_BITS, dtype=torch.int32, device=m.device)
        out[k] = (bits.to(torch.int32) * weights).sum(-1).to(torch.uint8)
    return out


def unpack_masks(packed: Params, like: Params, regimes: int) -> Params:
    """Packed masks back to booleans (T, s, ...) shaped like ``like``'s tensors (s, ...)."""
    out = {}
    for k, v in like.items():
        if k not in packed or packed[k].shape[0] != regimes:
            raise DataError(f"the packed masks must hold parameter {k!r} for {regimes} "
                            f"regimes; got {tuple(packed[k].shape) if k in packed else 'none'}")
        weights = torch.tensor(_BITS, dtype=torch.int32, device=packed[k].device)
        bits = (packed[k].to(torch.int32).unsqueeze(-1) & weights) > 0
        bits = bits.reshape(regimes, -1)
        if bits.shape[1] < v.numel() or bits.shape[1] >= v.numel() + 8:
            raise DataError(f"the packed mask of {k!r} holds {bits.shape[1]} bits per regime; "
                            f"expected {v.numel()} (padded to a byte)")
        out[k] = bits[:, :v.numel()].reshape(regimes, *v.shape)
    return out


def to_record(base: Params, merged: Params, masks: Params) -> Params:
    """What a TALL-masked model stores beside its weights: ``base.<name>`` (s, ...),
    ``vector.<name>`` (s, ...) and packed ``mask.<name>`` (T, bytes)."""
    packed = pack_masks(masks)
    return {**{f"base.{k}": v for k, v in base.items()},
            **{f"vector.{k}": v for k, v in merged.items()},
            **{f"mask.{k}": v for k, v in packed.items()}}


def read_record(record: Params, like: Params, regimes: int) -> tuple[Params, Params, Params]:
    """(base, merged vector, masks (T, s, ...)) from :func:`to_record`'s tensors, checked
    against the network's parameters ``like`` (s, ...)."""
    try:
        base = {k: record[f"base.{k}"] for k in like}
        merged = {k: record[f"vector.{k}"] for k in like}
        packed = {k: record[f"mask.{k}"] for k in like}
    except KeyError as exc:
        raise DataError(f"the TALL record lacks the tensor {exc}") from None
    for k, v in like.items():
        if base[k].shape != v.shape or merged[k].shape != v.shape:
            raise DataError(f"the TALL record's {k!r} must have the network's shape "
                            f"{tuple(v.shape)}; got {tuple(base[k].shape)} and "
                            f"{tuple(merged[k].shape)}")
    return base, merged, unpack_masks(packed, like, regimes)


def select_regime(records: dict, name: str, like: Params) -> Params:
    """Regime ``name``'s ensemble (s, ...) of a saved TALL-masked model, from its records
    ``merge`` (the regime names) and ``tall`` (:func:`to_record`)."""
    regimes = records.get("merge", {}).get("regimes")
    if "tall" not in records or not regimes:
        raise ConfigError(f"--regime {name!r}: this model has no TALL masks (merge it with "
                          f"--method tall)")
    if name not in regimes:
        raise ConfigError(f"--regime must be one of {', '.join(regimes)}; got {name!r}")
    base, merged, masks = read_record(records["tall"], like, len(regimes))
    return regime_params(base, merged, masks, regimes.index(name))
