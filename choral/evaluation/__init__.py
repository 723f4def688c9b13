"""Judging a predictive: scores (:mod:`.metrics`), post-hoc calibration (:mod:`.calibration`),
out-of-distribution flags (:mod:`.ood`) and the HTML report (:mod:`choral.evaluation.report`,
imported on demand: it needs matplotlib)."""

from choral.evaluation.calibration import (
    Conformal,
    ConformalPredictive,
    Isotonic,
    Recalibrated,
    Scale,
    calibrator_from_dict,
    fit_calibrator,
)
from choral.evaluation.metrics import evaluate
from choral.evaluation.ood import OODDetector

__all__ = ["Conformal", "ConformalPredictive", "Isotonic", "OODDetector", "Recalibrated",
           "Scale", "calibrator_from_dict", "evaluate", "fit_calibrator"]
