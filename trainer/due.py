"""When the loop acts, asked after each call: whether a logging, validation or checkpoint period is due
(big_vision's `itstime`), and where the run ends, and why (the last step, the time budget, early stopping)."""
import dataclasses
import time

from flaxforge.trainer import preemption


def itstime(step: int, every: int, end: int | None = None) -> bool:
  """Whether an action done every `every` steps (0: never) is due after `step`; it is always due at `end`
  (big_vision's `utils.itstime`, without its skip of a step close to the last)."""
  return (every > 0 and step % every == 0) or step == end


TIME_LIMIT, EARLY_STOPPING = "time limit", "early stopping"


@dataclasses.dataclass
class Due:
  """When the loop logs, validates and checkpoints (`itstime` of each period; checkpoints also at every
  validation), and where it ends: `end` is the last step until the time budget is spent or early stopping
  ends the run sooner, `why_end` says which ("" = the last step)."""
  log_every: int
  eval_every: int
  checkpoint_every: int
  end: int
  deadline: float | None  # time.monotonic() at which the time budget is spent
  why_end: str = ""

  def log(self, step: int) -> bool:
    return itstime(step, self.log_every, self.end)

  def validate(self, step: int) -> bool:
    return itstime(step, self.eval_every, self.end)

  def checkpoint(self, step: int) -> bool:
    return self.validate(step) or itstime(step, self.checkpoint_every)

  def out_of_time(self) -> bool:
    """Whether the time budget is spent, agreed by every process (a collective: ask at logging steps only)."""
    return self.deadline is not None and preemption.any_process(time.monotonic() > self.deadline)

  def end_at(self, step: int, why: str):
    self.end, self.why_end = step, why
