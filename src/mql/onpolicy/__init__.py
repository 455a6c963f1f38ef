"""The on-policy core shared by RL2, MAML-TRPO and ProMP: the batched sampler (`sampler`, over
`shard`s and worker processes, `workers`), trajectory arrays (`types`), advantages (`gae`,
`baseline`, `path_advantages`), Gaussian policies (`policies`; RL2's sampling step in NumPy,
`numpy_step`), PPO (`ppo`), TRPO's pieces (`trpo`) and the meta-gradient of MAML-TRPO and ProMP
(`meta_gradient`). docs/architecture.md shows how an iteration goes through them."""
