"""The off-policy core: replay with context windows, minibatch staging, the split of updates
into compiled calls, and the TD3 learner (per-sample weights and a proximal anchor) with its
networks. MQL stands on all of it; PEARL on `calls` and `updates`.

This `__init__` imports nothing, so `mql.offpolicy.types` (the literal types that configs
name) stays free of JAX.
"""
