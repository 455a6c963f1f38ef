"""PEARL as released in oyster: config and presets (`config`), networks and Gaussian maths
(`networks`), losses and the gradient step (`learner`), per-task buffers (`buffers`) and the
agent (`agent`)."""
