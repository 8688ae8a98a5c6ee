"""Training-ready data: the only place token tensors are built (STYLE.md layout).

tokenize.py  one row per turn with the policy's own tokenizer and chat template
export.py    verl-style parquet, torch tensors (.pt), TRL-ready datasets
inloop.py    per-turn and per-token advantages of one in-memory group, inside a training step
"""
