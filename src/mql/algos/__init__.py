"""Meta-training algorithms."""
