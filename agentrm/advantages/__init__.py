"""Advantage estimators: pure, vectorised numpy over step-row columns (no torch here).

    rows, records = read_step_rows("in.jsonl")
    result = compute(rows, AdvantageConfig(estimator="gigpo", gamma=0.95))
    result.advantage, result.columns["step_advantage"], result.metadata

Conventions and defaults: docs/advantages.md and ../shared/design/ALGORITHMS.md.
"""

from agentrm.advantages.config import ESTIMATOR_NAMES, AdvantageConfig
from agentrm.advantages.registry import AdvantageResult, available, compute, get, register
from agentrm.advantages.rows import StepRows, read_step_rows, rows_from_records

__all__ = ["AdvantageConfig", "AdvantageResult", "ESTIMATOR_NAMES", "StepRows", "available",
           "compute", "get", "read_step_rows", "register", "rows_from_records"]
