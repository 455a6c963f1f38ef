"""MAML-TRPO and ProMP: gradient-based meta-RL on the on-policy core."""
