"""trainer/progress.py: the ETA's rate counts from the end of the first step, leaving out one-time work, so the
first progress line of a run whose compile took an hour does not promise hours more."""
import re
import time
import types

from jax._src import compiler

from flaxforge.launch.configs import tiny
from flaxforge.trainer import loop
from flaxforge.trainer import progress as progress_lib


class _Clock:
  """A monotonic clock the test moves by hand."""

  def __init__(self):
    self.now = 1000.0

  def monotonic(self):
    return self.now


def _fake_time(monkeypatch) -> _Clock:
  clock = _Clock()
  monkeypatch.setattr(progress_lib, "time", types.SimpleNamespace(monotonic=clock.monotonic, strftime=time.strftime,
                                                                  gmtime=time.gmtime))
  return clock


def test_the_rate_counts_from_the_first_steps_end_without_one_time_work(monkeypatch, capsys):
  clock = _fake_time(monkeypatch)
  progress = progress_lib.Progress(total=100, initial=0)
  clock.now += 3600  # the compile and the first step
  progress.update(1)
  progress.first_step_done()
  clock.now += 9  # 9 steps of 1 s
  progress.update(9)
  with progress.excluded():
    clock.now += 30  # one-time work
  progress.log({"loss": 1.0, "examples_per_second": 100.0})
  assert "step 10/100 (10%) loss 1 examples/s 100 ETA 00:01:30" in capsys.readouterr().err  # 90 steps at 1 s


def test_the_first_progress_line_leaves_the_compile_out(tmp_path, monkeypatch, capsys):
  clock = _fake_time(monkeypatch)
  real_compile = compiler.backend_compile_and_load

  def hour_long_compile(backend, module, *args, **kwargs):
    if "train_step" in str(module.operation.attributes["sym_name"]):
      clock.now += 3600
    return real_compile(backend, module, *args, **kwargs)

  monkeypatch.setattr(compiler, "backend_compile_and_load", hour_long_compile)
  config = tiny.get_config()  # 40 steps, a line every 10
  config.train.progress_bar = True
  loop.train(config, str(tmp_path))
  etas = re.findall(r"^step (\d+)/40 .* ETA (\d\d:\d\d:\d\d)$", capsys.readouterr().err, re.M)
  assert [int(step) for step, _ in etas] == [10, 20, 30, 40]
  assert etas[0][1] == "00:00:00", etas  # steps on a clock that stands still but for the compile's hour
