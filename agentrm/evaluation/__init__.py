"""How good and how robust is each scorer: metrics against verified labels, hybrid best-of-N,
perturbation audits and PRM training data. Pure math lives in `metrics`; the rest arranges
stored trajectories and scores for it."""
