"""agentrm: agentic trajectory rewards.

task → rollout → trace → scores → advantages → training batch.
"""

__version__ = "0.1.0"
