"""`agentrm view`: a read-only web viewer over the trace store (see docs/view.md)."""
