"""Show a config with its overrides applied: flaxforge config show NAME [--config.FIELD=VALUE ...]

NAME is a shipped config (tiny, text_csv, gpt_text, ...) or a config file. Prints the resolved config as
YAML after checking every field against its declared range or choices.
"""
import sys

import yaml

from flaxforge.launch import common
from flaxforge.launch import flags as cli_flags
from flaxforge.trainer import fields

USAGE = "usage: flaxforge config show NAME [--config.FIELD=VALUE ...], e.g. flaxforge config show text_csv"


def _as_config_flag(argv: list[str]) -> bool:
  """`show NAME rest` -> `--config=NAME rest`, in place, before the config flag reads it."""
  if len(argv) >= 3 and argv[1] == "show" and not argv[2].startswith("-"):
    argv[1:3] = [f"--config={argv[2]}"]
    return True
  return False


_SHOWING = _as_config_flag(sys.argv)
CONFIG = cli_flags.define_config_flag()


def main(argv):
  if not _SHOWING or len(argv) > 1:
    raise common.UserError(USAGE)
  fields.validate(CONFIG.value)
  # safe_dump, not the ConfigDict's own YAML: it writes tuples as lists, without a !!python/tuple tag
  print(yaml.safe_dump(CONFIG.value.to_dict(), default_flow_style=False), end="")


if __name__ == "__main__":
  common.run(main)
