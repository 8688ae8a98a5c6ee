"""Evaluation harnesses (SWE-bench)."""
