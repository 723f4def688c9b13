"""ONNX export: a fitted surrogate's stacked ensemble as one ONNX graph, in user units.

The graph takes ``x`` (n, d) or (n, c_in, *grid) in the units of the training data (float32,
any n: the batch axis is dynamic; a field's grid is the training grid) and returns

- ``member_means`` and ``member_variances`` (s, n, m) or (s, n, c_out, *grid),
- ``mean`` and ``std`` of the mixture of the members (n, m) or (n, c_out, *grid),

all in the units of the targets: the standardisation of inputs and targets is part of the graph,
and so is a scale calibration (``scale``, ``pit_scale``: member means spread about their mean by
the factor, variances times its square), as in ``Surrogate.predict``. Other calibrations
(``isotonic``, ``conformal``, ``cqr``) reshape quantiles, not moments; the graph leaves them out
and says so in its metadata (``calibration``). Gaussian and mixture-density heads; the graph
computes in float32 (what onnxruntime's CPU convolutions take).

The metadata (``onnx.ModelProto.metadata_props``) names the opset, shapes, members, outputs,
head and calibration; :func:`export_onnx` returns it.

Examples:
    >>> import numpy as np, onnxruntime, tempfile
    >>> from choral.config import Config
    >>> from choral.surrogate import Surrogate
    >>> X = np.random.default_rng(0).uniform(0, 1, (40, 2)); Y = X.sum(1, keepdims=True)
    >>> model = Surrogate(Config().updated(**{"train.members": 2, "train.epochs": 2})).fit(X, Y)
    >>> path = tempfile.mkdtemp() + "/model.onnx"
    >>> export_onnx(model, path)["opset"]
    '18'
    >>> session = onnxruntime.InferenceSession(path)
    >>> means, variances, mean, std = session.run(None, {"x": X[:3].astype("float32")})
    >>> means.shape, std.shape
    ((2, 3, 1), (3, 1))
"""

from __future__ import annotations

import io
import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from choral.atomic import atomic_write
from choral.errors import ConfigError, DataError
from choral.evaluation.calibration import scale_factor
from choral.networks.heads import GaussianHead, MDNHead, gaussian_head

__all__ = ["OUTPUTS", "EnsembleGraph", "export_onnx"]

OUTPUTS = ("member_means", "member_variances", "mean", "std")
DEFAULT_OPSET = 18


def _const(a: Any, shape: tuple[int, ...]) -> Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float32)).reshape(shape)


class EnsembleGraph(nn.Module):
    """The stacked members of a fitted ``surrogate`` as a module ``x -> (member means (s, n, ...),
    member variances (s, n, ...), mixture mean (n, ...), mixture std (n, ...))``, user units.

    What ``export_onnx`` traces; in PyTorch it computes what ``surrogate.predict`` does, in
    float32 (member moments of a mixture-density member are those of its K components).
    """

    def __init__(self, surrogate: Any) -> None:
        super().__init__()
        if getattr(surrogate, "params", None) is None:
            raise DataError("surrogate must be fitted (call fit or load first)")
        self.head = surrogate.head
        if not isinstance(self.head, GaussianHead | MDNHead):
            raise ConfigError(f"ONNX export takes model.head 'gaussian' or 'mdn'; got "
                              f"{surrogate.config.model.head!r} (quantile members have no "
                              f"closed-form moments to export)")
        self.forward_members = surrogate.template.forward_stacked if hasattr(
            surrogate.template, "forward_stacked") else surrogate.forward
        self.names = list(surrogate.params)
        for i, name in enumerate(self.names):  # buffers: constants of the graph
            self.register_buffer(f"p{i}", surrogate.params[name].detach().float().cpu())
        x_nd, y_nd = 1 + len(surrogate.x_shape), 1 + len(surrogate.y_shape)
        for key, norm, ndim in (("x", surrogate.x_norm, x_nd), ("y", surrogate.y_norm, y_nd)):
            loc, scale = norm.loc_scale(ndim)
            self.register_buffer(f"{key}_loc", _const(loc, loc.shape))
            self.register_buffer(f"{key}_scale", _const(scale, scale.shape))
        factor = scale_factor(surrogate.calibrator, surrogate.y_shape)
        self.scaled = factor is not None
        if self.scaled:
            self.register_buffer("factor", factor.detach().float().cpu())
        self.members = int(surrogate.params[self.names[0]].shape[0])

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        params = {name: getattr(self, f"p{i}") for i, name in enumerate(self.names)}
        z = (x - self.x_loc) / self.x_scale
        out = self.forward_members(params, z.expand(self.members, *z.shape))
        if isinstance(self.head, MDNHead):
            logw, mu, var = self.head.split(out)
            w = torch.exp(logw)
            mean_z = (w * mu).sum(2)
            var_z = (w * (var + mu**2)).sum(2) - mean_z**2
        else:
            mean_z, var_z = gaussian_head(out, self.head.floor, dim=2)
        means = mean_z * self.y_scale + self.y_loc
        variances = var_z * self.y_scale**2
        mean = means.mean(0)
        if self.scaled:  # Scale.apply: affine(mean (1 - c), c) of every member
            means = mean + self.factor * (means - mean)
            variances = variances * self.factor**2
        var = variances.mean(0) + ((means - mean) ** 2).mean(0)
        return means, variances, mean, torch.sqrt(var)


def _calibration(surrogate: Any, scaled: bool) -> str:
    cal = surrogate.calibrator
    if cal is None:
        return "none"
    if scaled:
        return cal.method
    return f"not applied ({cal.method} calibrates quantiles, not moments)"


def export_onnx(surrogate: Any, path: str | Path, opset: int = DEFAULT_OPSET) -> dict[str, str]:
    """Write the ensemble of a fitted ``surrogate`` as an ONNX graph to ``path``, atomically.

    Input ``x`` (n, *x_shape) float32 with n dynamic; outputs :data:`OUTPUTS` (see the module
    docstring). ``opset`` >= 18. Returns the metadata written into the model.
    """
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < 18:
        raise ConfigError(f"opset must be an integer >= 18 (the exporter's lowest); got {opset!r}")
    graph = EnsembleGraph(surrogate).eval()
    x_shape = tuple(int(v) for v in surrogate.x_shape)
    probe = torch.as_tensor(surrogate.x_norm.mean, dtype=torch.float32)
    probe = probe.reshape(1, -1, *(1,) * (len(x_shape) - 1)).expand(2, *x_shape).contiguous()
    batch = torch.export.Dim("n", min=1, max=2**31 - 1)
    quiet = logging.getLogger("torch.onnx")  # it logs a line per missing torchvision op
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(graph, (probe,), dynamo=True, opset_version=opset,
                                        input_names=["x"], output_names=list(OUTPUTS),
                                        dynamic_shapes={"x": {0: batch}}, verbose=False,
                                        optimize=True)
    finally:
        quiet.setLevel(level)
    proto = program.model_proto
    meta = {"opset": str(opset), "producer": "choral", "x_shape": json.dumps(x_shape),
            "y_shape": json.dumps([int(v) for v in surrogate.y_shape]),
            "members": str(graph.members), "head": surrogate.config.model.head,
            "backbone": surrogate.config.model.backbone, "outputs": ",".join(OUTPUTS),
            "units": "user units in and out (standardisation inside the graph)",
            "dtype": "float32", "calibration": _calibration(surrogate, graph.scaled)}
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    buffer = io.BytesIO()
    import onnx

    onnx.save_model(proto, buffer)
    atomic_write(path, lambda tmp: tmp.write_bytes(buffer.getvalue()))
    return meta

