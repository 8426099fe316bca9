"""Early stopping: the run ends once the validation metric has not improved for `patience` validations.

Its state (best value, its step, validations without improvement) goes into every checkpoint's JSON meta,
so a run killed and resumed makes the same decision at the same step. Whether a run has stopped is derived
(`bad >= patience`), so rerunning a stopped run with a larger `patience` goes on training.
"""
import dataclasses

from flaxforge.core.errors import UserError
from flaxforge.trainer import fields


@dataclasses.dataclass
class EarlyStopping:
  cfg: fields.EarlyStopping  # metric ('' = off), mode, patience, min_delta
  best: float | None = None
  best_step: int | None = None
  bad: int = 0  # validations since the last improvement

  @classmethod
  def from_config(cls, config, saved: dict | None) -> "EarlyStopping":
    """From `config.train.early_stopping` (a config from before it existed: off) and `saved`, the state in a
    checkpoint's meta (or None)."""
    return cls(fields.EarlyStopping.of(config), **(saved or {}))

  @property
  def metric(self) -> str:
    return self.cfg.metric

  @property
  def enabled(self) -> bool:
    return bool(self.metric)

  @property
  def stopped(self) -> bool:
    return self.enabled and self.bad >= self.cfg.patience

  def state(self) -> dict:
    """What a checkpoint's meta stores."""
    return {"best": self.best, "best_step": self.best_step, "bad": self.bad}

  def update(self, step: int, validation: dict) -> bool:
    """Takes the validation at `step` into account; True when the run should stop here."""
    if not self.enabled:
      return False
    if self.metric not in validation:
      names = ", ".join(k for k, v in validation.items() if isinstance(v, (int, float)))
      raise UserError(f"early stopping watches validation {self.metric!r}, which this run does not compute; set "
                      f"--config.train.early_stopping.metric to one of: {names}")
    value = float(validation[self.metric])
    delta = self.cfg.min_delta
    if self.best is None or (value - delta > self.best if self.cfg.mode == "max" else value + delta < self.best):
      self.best, self.best_step, self.bad = value, step, 0
    else:
      self.bad += 1
    return self.stopped

  def describe(self, step: int) -> str:
    return (f"early stopping after step {step}: validation {self.metric} has not improved by more than "
            f"{self.cfg.min_delta:g} for {self.bad} validations (best {self.best:.4f} at step {self.best_step})")
