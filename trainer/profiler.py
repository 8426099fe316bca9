"""Captures a JAX profiler trace of chosen steps into <workdir>/profile (TensorBoard or Perfetto), says
where it went, and warns in one line when the chosen steps lie outside the run."""
import sys

import jax
from etils import epath

from flaxforge.trainer import fields


class Profiler:

  def __init__(self, cfg: fields.Profile, workdir, *, first_step: int = 0, total: int | None = None):
    """Traces steps [cfg.start_step, cfg.start_step + cfg.num_steps) of the ones this run does,
    [first_step, total)."""
    self.start, self.num = cfg.start_step, cfg.num_steps
    self.directory = epath.Path(workdir) / "profile"
    self.active = False
    if total is not None and self.start >= 0:
      self.end = min(self.start + self.num, total)
      if self.start >= total or self.end <= first_step:
        _say(f"warning: profile.start_step={self.start} (num_steps={self.num}) lies outside this run's steps "
             f"{first_step}-{total}; no trace will be written. Set --config.profile.start_step between "
             f"{first_step} and {total - 1}")
        self.start = -1
    else:
      self.end = self.start + self.num

  def maybe_start(self, step: int):
    if self.start >= 0 and not self.active and self.start <= step < self.end:
      jax.profiler.start_trace(str(self.directory))
      self.active, self.first = True, step

  def maybe_stop(self, step: int, state):
    if self.active and step >= self.end:
      jax.block_until_ready(state)
      jax.profiler.stop_trace()
      self.active = False
      self.start = -1
      runs = sorted((self.directory / "plugins" / "profile").glob("*"), key=lambda p: p.name)
      _say(f"profiler trace of steps {self.first}-{step - 1} in {runs[-1] if runs else self.directory} "
           f"(tensorboard --logdir {self.directory}, or the .trace.json.gz in https://ui.perfetto.dev)", sys.stdout)


def _say(line: str, stream=None):
  if jax.process_index() == 0:
    print(line, file=stream or sys.stderr, flush=True)
