"""Captures a JAX profiler trace of chosen steps into <workdir>/profile (TensorBoard or Perfetto)."""
import jax


class Profiler:

  def __init__(self, cfg, workdir):
    self.start, self.num = cfg.start_step, cfg.num_steps
    self.directory = str(workdir / "profile")
    self.active = False

  def maybe_start(self, step: int):
    if self.start >= 0 and not self.active and self.start <= step < self.start + self.num:
      jax.profiler.start_trace(self.directory)
      self.active = True

  def maybe_stop(self, step: int, state):
    if self.active and step >= self.start + self.num:
      jax.block_until_ready(state)
      jax.profiler.stop_trace()
      self.active = False
      self.start = -1
