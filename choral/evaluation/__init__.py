"""Judging a predictive: scores (:mod:`.metrics`), post-hoc calibration (:mod:`.calibration`),
out-of-distribution flags (:mod:`.ood`) and the HTML report (:mod:`choral.evaluation.report`,
imported on demand: it needs matplotlib)."""

from choral.evaluation.calibration import (
    CQR,
    Conformal,
    ConformalPredictive,
    Isotonic,
    PitScale,
    Recalibrated,
    Scale,
    calibrator_from_dict,
    cross_fit,
    fit_calibrator,
)
from choral.evaluation.metrics import evaluate
from choral.evaluation.ood import OODDetector

__all__ = ["CQR", "Conformal", "ConformalPredictive", "Isotonic", "OODDetector", "PitScale",
           "Recalibrated", "Scale", "calibrator_from_dict", "cross_fit", "evaluate",
           "fit_calibrator"]
