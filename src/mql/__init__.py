"""mql: Meta-Q-Learning and the meta-RL systems it is compared with."""

__version__ = "0.1.0"
