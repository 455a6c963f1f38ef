"""MQL and its ablations: config and presets (`config`), propensity maths (`propensity`), the
agent with meta-training and adaptation (`agent`). Its learner is the off-policy core's TD3
(`mql.offpolicy.td3`)."""
