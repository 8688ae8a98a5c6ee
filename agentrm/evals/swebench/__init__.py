"""SWE-bench-compatible evaluation in local Docker (offline), with an agent mode."""
