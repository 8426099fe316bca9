"""Train a model, or resume its run: flaxforge train --config=NAME|FILE --workdir=DIR [--config.FIELD=VALUE ...]

The same as python -m flaxforge.launch.train. NAME is a shipped config (flaxforge config show NAME prints it).
"""
from flaxforge.core.errors import UserError
from flaxforge.launch import common
from flaxforge.launch import flags as cli_flags
from flaxforge.trainer import fields

CONFIG = cli_flags.define_config_flag()


def main(argv):
  if len(argv) > 1:
    raise UserError(f"unexpected arguments {argv[1:]}; config fields are set as --config.FIELD=VALUE")
  workdir = common.require_workdir()
  config = CONFIG.value  # without --config, the run's own in the workdir (if any) with the overrides set
  fields.validate(config)
  run = fields.Run.of(config)
  common.allocator.reexec_once(run.malloc)  # the config's own choice
  common.use_xla_flags(run.xla_flags)
  common.init_distributed()
  from flaxforge.trainer import loop  # pylint: disable=g-import-not-at-top  (after jax.distributed.initialize)
  results = loop.train(config, workdir)
  common.print_result({"split": "test", **{k: v for k, v in results.items() if isinstance(v, (int, float))}})


if __name__ == "__main__":
  common.run(main)
