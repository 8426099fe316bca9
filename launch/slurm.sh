#!/usr/bin/env bash
# One training job across a GPU cluster: one process per GPU, started by srun, joined by jax.distributed.
#
#   sbatch launch/slurm.sh --config=launch/configs/mlp_digits.py --workdir=/shared/runs/digits
#   sbatch --nodes=4 launch/slurm.sh ...          # the #SBATCH lines below are defaults; flags override them
#
# Submit from the repository root on a filesystem every node sees, with the environment installed there
# (pip install -e '.[gpu]'); --workdir must be shared too (NFS, Lustre or gs://): all processes write
# their part of each checkpoint into it. JAX reads SLURM_* and gives each process the GPU of its
# SLURM_LOCALID, which is why there is one task per GPU. Environment: PYTHON (default .venv/bin/python
# if present, else python), MODULE (default flaxforge.launch.train; flaxforge.launch.eval evaluates the same way).
#
#SBATCH --job-name=flaxforge
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=8
#SBATCH --time=04:00:00
#SBATCH --output=%x-%j.out
set -euo pipefail

cd "${SLURM_SUBMIT_DIR:-$(dirname "$0")/..}"
python=${PYTHON:-$([[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python)}

# --kill-on-bad-exit: when one process fails the others stop instead of waiting in a collective.
# --label prefixes each output line with its task number.
exec srun --kill-on-bad-exit=1 --label "$python" -m "${MODULE:-flaxforge.launch.train}" "$@"
