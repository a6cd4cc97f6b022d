"""The regression gate: this run's items against a baseline, stored
(--baseline PATH) or measured beside them in this session (A/B).

verdict: the statistics (pure); baseline: reading a stored baseline; judge:
measuring again until a verdict is decided, and the metric check.
"""
from xpuperf.gate.baseline import Baseline, BaselineError, PerfFigures, load_baseline
from xpuperf.gate.judge import (INCONCLUSIVE_EFFECTS, GateSettings, SpeedComparison, ab,
                                against_baseline, check_metric)

__all__ = ["Baseline", "BaselineError", "GateSettings", "INCONCLUSIVE_EFFECTS", "PerfFigures",
           "SpeedComparison", "ab", "against_baseline", "check_metric", "load_baseline"]
