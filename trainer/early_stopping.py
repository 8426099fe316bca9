"""Early stopping: the run ends once the validation metric has not improved for `patience` validations.

Its state (best value, its step, validations without improvement) goes into every checkpoint's JSON meta,
so a run killed and resumed makes the same decision at the same step. Whether a run has stopped is derived
(`bad >= patience`), so rerunning a stopped run with a larger `patience` goes on training.
"""
import dataclasses

from flaxforge.core.errors import UserError


@dataclasses.dataclass
class EarlyStopping:
  metric: str = ""  # '' = off
  mode: str = "max"
  patience: int = 1
  min_delta: float = 0.0
  best: float | None = None
  best_step: int | None = None
  bad: int = 0  # validations since the last improvement

  @classmethod
  def from_config(cls, cfg, saved: dict | None) -> "EarlyStopping":
    """`cfg` is `config.train.early_stopping` (None: a config from before it existed, off); `saved` the
    state from a checkpoint's meta (or None)."""
    if cfg is None:
      return cls()
    if cfg.mode not in ("max", "min"):
      raise UserError(f"train.early_stopping.mode is {cfg.mode!r}; set --config.train.early_stopping.mode to "
                      "max or min")
    return cls(cfg.metric, cfg.mode, cfg.patience, cfg.min_delta, **(saved or {}))

  @property
  def enabled(self) -> bool:
    return bool(self.metric)

  @property
  def stopped(self) -> bool:
    return self.enabled and self.bad >= self.patience

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
    if self.best is None or (value - self.min_delta > self.best if self.mode == "max"
                             else value + self.min_delta < self.best):
      self.best, self.best_step, self.bad = value, step, 0
    else:
      self.bad += 1
    return self.stopped

  def describe(self, step: int) -> str:
    return (f"early stopping after step {step}: validation {self.metric} has not improved by more than "
            f"{self.min_delta:g} for {self.bad} validations (best {self.best:.4f} at step {self.best_step})")
