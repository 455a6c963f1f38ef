"""The on-policy core (issue: RL2 with PPO): a batched sampler, GAE, the linear feature
baseline, PPO and TRPO. Shared by RL2, MAML-TRPO and ProMP; docs/architecture.md says where
each piece goes. Nothing is implemented here yet."""
