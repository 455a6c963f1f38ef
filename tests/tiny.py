"""Tiny settings of every algorithm on point-robot, shared by the tests (a few seconds of
compilation, a warm-up of 20 steps a task)."""

from __future__ import annotations

from typing import Any

from mql.algos import registry
from mql.algos.config_base import BaseConfig

TINY: dict[str, dict[str, Any]] = {
    "MQLConfig": dict(
        hidden=(8, 8),
        history_len=2,
        context_dim=4,
        gru_kernel="xla",
        batch_size=16,
        num_initial_steps=20,
        num_train_steps=5,
        num_tasks_sample=1,
        small_buffer=0,
        replay_size=3000,
        updates_per_call=5,
    ),
    "PEARLConfig": dict(
        hidden=(8, 8),
        encoder_hidden=(8,),
        latent_dim=2,
        num_initial_steps=20,
        num_steps_prior=20,
        num_extra_rl_steps_posterior=20,
        num_train_steps_per_itr=5,
        num_tasks_sample=1,
        replay_size=100,
        meta_batch=2,
        batch_size=8,
        embedding_batch_size=8,
        updates_per_call=5,
    ),
    "RL2Config": dict(
        hidden=8,
        meta_batch=4,
        ppo_epochs=2,
        sampler_processes=1,
        eval_every=160,
    ),
    "MAMLTRPOConfig": dict(
        hidden=(8,), meta_batch=3, rollouts_per_task=2, sampler_processes=1, eval_every=240
    ),
    "ProMPConfig": dict(
        hidden=(8,), meta_batch=3, rollouts_per_task=2, sampler_processes=1, eval_every=240
    ),
}


def tiny_config(algo: str, **kw: Any) -> BaseConfig:
    cls = registry.config_class(algo)
    return registry.resolve("point-robot", algo, **{**TINY[cls.__name__], **kw})
