"""The `flaxforge` command as a user runs it, from a folder that is not the repository: subcommands, config
names, help, ranges, and each mistake ending in one line that names the fix (exit status 2)."""
import json
import re
import subprocess

import pytest

from conftest import FLAXFORGE, cli_env, flaxforge, one_line
from flaxforge.core import config_fields
from flaxforge.core.errors import UserError
from flaxforge.launch import configs
from flaxforge.launch.configs import default, tiny
from flaxforge.trainer import fields

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A tiny digits run, trained from another folder with the README's relative config path."""
  elsewhere = tmp_path_factory.mktemp("elsewhere")
  workdir = elsewhere / "run"
  proc = flaxforge("train", "--config=launch/configs/tiny.py", f"--workdir={workdir}", cwd=elsewhere)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return workdir


@pytest.mark.slow  # subprocess CLI runs
def test_usage_lists_the_commands_and_a_typo_gets_a_suggestion(tmp_path):
  out = flaxforge("--help", cwd=tmp_path)
  assert out.returncode == 0
  assert all(f"  {name} " in out.stdout for name in ("train", "eval", "predict", "generate", "config"))
  assert "did you mean 'train'?" in one_line(flaxforge("trian", cwd=tmp_path))


@pytest.mark.slow  # subprocess CLI runs
def test_unknown_config_name_lists_the_shipped_ones(tmp_path):
  line = one_line(flaxforge("train", "--config=tnyi", f"--workdir={tmp_path}", cwd=tmp_path))
  assert "'tnyi' is neither a file nor a shipped config (did you mean 'tiny'?)" in line
  assert "text_csv" in line and "gpt_text" in line
  line = one_line(flaxforge("train", "--config=launch/configs/tnyi.py", f"--workdir={tmp_path}", cwd=tmp_path))
  assert "did you mean 'tiny'?" in line


@pytest.mark.slow  # subprocess CLI runs
def test_train_help_shows_every_config_field_on_two_screens(tmp_path):
  out = flaxforge("train", "--help", cwd=tmp_path)
  assert out.returncode == 0, out.stderr
  lines = out.stdout.splitlines()
  assert len(lines) <= 100, len(lines)
  config = default.get_config()
  declared = config_fields.declarations(fields.sections_of(config))
  for name, value in config_fields.flatten(config).items():
    shown = [l for l in lines if l.strip().startswith(f"{name} = {value!r}")]
    assert shown and declared[name].description in shown[0], name
  assert "--workdir" in out.stdout and "logtostderr" not in out.stdout
  helpfull = flaxforge("train", "--config=tiny", "--helpfull", cwd=tmp_path)  # README: adds absl's logging flags
  assert "logtostderr" in helpfull.stdout and "--workdir" in helpfull.stdout, helpfull.stderr[-2000:]
  assert "data.batch_size = 32" in out.stdout and "[integer >= 1]" in out.stdout
  text_csv = flaxforge("train", "--config=text_csv", "--help", cwd=tmp_path).stdout
  assert "data.label_column = 'label'" in text_csv and "data.num_words = 30000" in text_csv


@pytest.mark.slow  # subprocess CLI runs
def test_help_into_a_closed_pipe_ends_quietly(tmp_path):
  """`flaxforge train --help | head -1`: the reader has gone when help is written; no BrokenPipeError traceback."""
  proc = subprocess.Popen([FLAXFORGE, "train", "--help"], cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  proc.stdout.close()  # before anything is written, so every write fails
  stderr = proc.stderr.read()
  assert proc.wait() == 1 and stderr == "", stderr[-2000:]


def test_the_name_fields_list_every_built_in_dataset_and_model():
  from flaxforge import data  # pylint: disable=g-import-not-at-top
  from flaxforge.models import registry  # pylint: disable=g-import-not-at-top
  declared = config_fields.declarations(fields.sections_of(default.get_config()))
  for field, names in (("data.name", data._LOADERS), ("model.name", registry._MODULES)):  # pylint: disable=protected-access
    described = declared[field].description
    assert all(re.search(rf"\b{name}\b", described) for name in names), (field, described)


def test_every_field_of_every_shipped_config_is_described(tmp_path):
  for name in configs.shipped():
    config = configs.load(name)
    held = config_fields.flatten(config)
    assert not set(held) - set(config_fields.declarations(fields.sections_of(config))), name


@pytest.mark.slow  # subprocess CLI runs
@pytest.mark.parametrize("override,shown", [
    ("--config.data.batch_size=0", "config.data.batch_size = 0 is out of range: allowed is integer >= 1"),
    ("--config.data.batch_size=-5", "config.data.batch_size = -5 is out of range: allowed is integer >= 1"),
    ("--config.checkpoint.keep=0", "config.checkpoint.keep = 0 is out of range: allowed is integer >= 1"),
    ("--config.model.dropout=1.5", "config.model.dropout = 1.5 is out of range: allowed is number >= 0 and < 1"),
    ("--config.mesh.fsdp=0", "config.mesh.fsdp = 0 is out of range: allowed is integer >= 1 or -1"),
])
def test_numeric_fields_outside_their_range(tmp_path, override, shown):
  line = one_line(flaxforge("train", "--config=tiny", f"--workdir={tmp_path / 'w'}", override, cwd=tmp_path))
  assert shown in line and f"--config.{override.split('.', 1)[1].split('=')[0]}" in line
  assert not (tmp_path / "w").exists()  # refused before anything is written


def test_validate_checks_configs_given_through_python():
  config = tiny.get_config()
  fields.validate(config)
  config.model.hidden = (64, -3)
  with pytest.raises(UserError, match=r"config.model.hidden = \(64, -3\) is out of range"):  # tuples too
    fields.validate(config)
  config.model.hidden = (64,)
  config.optimizer.learning_rate = 0.0
  with pytest.raises(UserError, match=r"config.optimizer.learning_rate = 0.0 is out of range: allowed is number > 0"):
    fields.validate(config)


@pytest.mark.slow  # subprocess CLI runs
def test_config_show_prints_the_resolved_config(tmp_path):
  out = flaxforge("config", "show", "tiny", "--config.train.num_steps=7", cwd=tmp_path)
  assert out.returncode == 0, out.stderr
  assert "num_steps: 7" in out.stdout and "batch_size: 16" in out.stdout
  assert "!!python" not in out.stdout and "  hidden:\n  - 64\n" in out.stdout  # tuples as plain YAML lists
  assert "usage: flaxforge config show NAME" in one_line(flaxforge("config", cwd=tmp_path))


@pytest.mark.slow  # subprocess CLI runs
@pytest.mark.parametrize("name", ["finetune_text", "finetune_lm"])
def test_the_tokenizer_path_follows_the_pretrained_model_one_way(tmp_path, name):
  """data.tokenizer_path defaults to model.pretrained; naming a tokenizer must not move the model."""
  def shown(*overrides):
    out = flaxforge("config", "show", name, *overrides, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    return re.findall(r"^  (pretrained|tokenizer_path): (.*)$", out.stdout, re.M)
  model, tokenizer = "--config.model.pretrained=/m", "--config.data.tokenizer_path=/t/tokenizer.json"
  assert sorted(shown(model)) == [("pretrained", "/m"), ("tokenizer_path", "/m")]
  for order in ((model, tokenizer), (tokenizer, model)):
    assert sorted(shown(*order)) == [("pretrained", "/m"), ("tokenizer_path", "/t/tokenizer.json")]
  listed = flaxforge("config", "show", name, cwd=tmp_path).stdout  # the pretrained directory decides these
  assert not re.findall(r"^  (size|num_layers|position|norm|tie_embeddings|separator):", listed, re.M)


@pytest.mark.slow  # subprocess CLI runs
@pytest.mark.parametrize("args,shown", [
    (("--input=missing.txt",), "cannot read --input=missing.txt (No such file or directory)"),
    (("--input=empty.txt",), "empty.txt holds no text to classify"),
    (("--input=-",), "stdin holds no text to classify"),
    (("--best", "--step=3", "a text"), "--best and --step=3 each choose a checkpoint; pass only one of them"),
    (("--top_k=0", "a text"), "--top_k=0 is out of range; use --top_k=1 or more"),
])
def test_predict_mistakes(tmp_path, args, shown):
  (tmp_path / "empty.txt").write_text("\n  \n")
  assert shown in one_line(flaxforge("predict", f"--workdir={tmp_path}", *args, cwd=tmp_path, stdin=""))


@pytest.mark.slow  # subprocess CLI runs
@pytest.mark.parametrize("args,shown", [
    (("--temperature=-1",), "--temperature=-1.0 is out of range; use --temperature=0 or more"),
    (("--top_k=-2",), "--top_k=-2 is out of range; use --top_k=0 or more"),
])
def test_generate_sampling_flags_out_of_range(tmp_path, args, shown):
  assert shown in one_line(flaxforge("generate", f"--workdir={tmp_path}", *args, cwd=tmp_path))


@pytest.mark.slow  # subprocess CLI runs
def test_eval_refuses_best_with_step(trained):
  line = one_line(flaxforge("eval", f"--workdir={trained}", "--best", "--step=20", cwd=trained))
  assert "--best and --step=20 each choose a checkpoint" in line


@pytest.mark.slow  # subprocess CLI runs
def test_eval_names_its_report_files_which_carry_the_step(trained, tmp_path):
  out = flaxforge("eval", f"--workdir={trained}", "--step=20", f"--report_dir={tmp_path / 'r'}", cwd=tmp_path)
  assert out.returncode == 0, out.stderr[-2000:]
  files = [tmp_path / "r" / "test_step20.json", tmp_path / "r" / "test_step20_confusion.png"]
  assert out.stdout.splitlines()[-2] == f"wrote {files[0]}, {files[1]}"
  assert json.loads(files[0].read_text())["step"] == 20 and files[1].stat().st_size > 1000
  # The per-class table, as scikit-learn's classification_report prints it: one row per digit
  header, classes, totals = out.stdout.split("\n\n")[:3]
  rows = [line.split() for line in classes.splitlines()]
  assert header.split() == ["precision", "recall", "f1-score", "support"] and [r[0] for r in rows] == list("0123456789")
  assert totals.split()[:1] == ["accuracy"] and "macro avg" in totals
  confusion = json.loads(files[0].read_text())["confusion"]
  assert [int(r[4]) for r in rows] == [sum(row) for row in confusion]
  assert json.loads(out.stdout.splitlines()[-1])["step"] == 20


@pytest.mark.slow  # subprocess CLI runs
def test_eval_of_an_unwritable_run_still_prints_its_metrics(trained, tmp_path):
  blocked = tmp_path / "not_a_folder"
  blocked.write_text("")
  out = flaxforge("eval", f"--workdir={trained}", f"--report_dir={blocked / 'report'}", cwd=tmp_path)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stderr.strip().splitlines() == [
      f"warning: could not write the report in {blocked / 'report'} (Not a directory); pass "
      "--report_dir=A_WRITABLE_FOLDER"]
  result = json.loads(out.stdout.strip().splitlines()[-1])
  assert result["step"] == 40 and 0.5 < result["accuracy"] <= 1 and "report" not in result
