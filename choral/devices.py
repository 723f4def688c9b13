"""Which device computes: ``train.device`` / ``--device`` resolved to a :class:`torch.device`.

``auto`` is the first GPU when torch sees one, else the CPU; ``cuda`` and ``cuda:k`` must exist.

Examples:
    >>> resolve_device("cpu")
    device(type='cpu')
    >>> resolve_device("tpu")
    Traceback (most recent call last):
    ...
    choral.errors.ConfigError: device must be auto, cpu, cuda or cuda:k (k a GPU index); got 'tpu'
"""

from __future__ import annotations

import re

import torch

from choral.errors import ConfigError

__all__ = ["DEVICE_PATTERN", "available_devices", "resolve_device"]

DEVICE_PATTERN = r"auto|cpu|cuda(:\d+)?"
"""The device names a configuration accepts."""


def resolve_device(name: str | torch.device) -> torch.device:
    """The device ``name`` (``auto``, ``cpu``, ``cuda`` or ``cuda:k``) means on this machine."""
    if isinstance(name, torch.device):
        return name
    if not isinstance(name, str) or not re.fullmatch(DEVICE_PATTERN, name):
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:k (k a GPU index); "
                          f"got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            raise ConfigError(f"device {name!r} was asked for but torch sees {count} CUDA "
                              f"GPU(s) here; use 'auto' or 'cpu'")
    return device


def available_devices() -> list[str]:
    """Every device present: ``cpu`` and each ``cuda:k`` (for tests parametrised over them).

    >>> available_devices()[0]
    'cpu'
    """
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return ["cpu", *(f"cuda:{k}" for k in range(gpus))]
