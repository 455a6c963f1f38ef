"""Learner throughput: how fast MQL's update, its meta-training loop and its replay run here.

    mql bench [--presets cheetah-vel ant-goal humanoid-dir] [--rounds 3] [--updates 200]
              [--e2e-steps 200] [--fill 100000] [--quick] [--experiments] [--write [DOC]]
    python benchmarks/bench.py ...          (the same)

A measuring tool, kept apart from the library (nothing in `mql` outside this package imports
it), in modules by job: `machine` (what this machine is), `timing` (peak and ceiling rates,
timed update calls), `flops` (FLOPs per update), `memory` (replay bytes), `learner` (the preset
learner and its batches, and every number of one preset), `experiments` (A/B variants of the
update), `evaluation` (a periodic evaluation, batched against one task at a time:
`--eval`), `report` (markdown tables and the doc section), `cli` (`mql bench`).

For each preset (paper values, `mql.config.resolve(env, "mql")`) one run prints:

- peak: dense fp32 matmul throughput of this machine, measured with JAX (n x n x n, n = 1024);
- the MQL update (`TD3.update_many`, `updates_per_call` updates per compiled call, batches
  sampled from the replay buffer and already on the device): updates/s, FLOPs per update and
  utilisation = FLOPs/update x updates/s / peak;
- end-to-end meta-training (`MQL.run_iteration` with one update per collected step, after a
  compile/warm-up iteration): environment steps/s, and its ratio to the pure update rate (1.0
  would mean acting, environment stepping and replay cost nothing);
- action-selection latency per environment step (`MQLPolicy.act`: context window, jit call,
  exploration noise), one environment step, and host sampling per update (indices, then the
  context windows gathered into reused memory and handed to JAX, as `MQL` does it:
  `mql.offpolicy.staging`), with the host memory that staging keeps ("staging MB": one
  call's minibatches);
- replay bytes per stored transition and the peak memory while filling `--fill` transitions.

FLOPs per update come from XLA's cost analysis of the compiled update. XLA counts both branches
of the `lax.cond` that runs the delayed actor step, so the actor branch, compiled and counted on
its own, is weighted by 1/policy_freq: per update = cost(update) - (1 - 1/policy_freq) x
cost(actor branch). `hand` is an independent count of the matmul FLOPs only (`matmul_flops`).

Timing: the machine may be shared, so the peak, the update rate and the loop rate are measured
in alternating rounds (peak, half the pure updates, the loop, the other half, peak). The
end-to-end/update ratio is taken within each round; the table shows medians over rounds. The
peak is the best matmul measurement of the whole run (all presets): another process on one core
halves a large matmul's rate but slows the update less, as its small matmuls keep fewer cores
busy ("cores busy": process CPU time / wall time while updating). Utilisation = FLOPs/update x
median updates/s / that peak.
`--experiments` adds A/B measurements of variants of the update (the GRU's gradient, buffer
donation, XLA compile options, context modes), timed in alternating rounds in the same process.
`--write [DOC]` replaces the generated part of the "Learner throughput" section of DOC (default
docs/performance.md under the current directory, between its markers).
"""
