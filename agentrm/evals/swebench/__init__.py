"""SWE-bench-compatible evaluation in local Docker (offline), with an agent mode.

    from agentrm.evals.swebench import EvalConfig, evaluate
    run = evaluate(EvalConfig(predictions="gold"))   # bundled instances; run.summary is SWE-bench's shape
"""

from agentrm.evals.swebench.harness import EvalConfig, EvalRun, evaluate

__all__ = ["EvalConfig", "EvalRun", "evaluate"]
