"""RL2 with PPO: config and presets (`config`) and the agent (`agent`), on the on-policy core
(`mql.onpolicy`: sampler, GAE, linear baseline, recurrent Gaussian policy, PPO)."""
