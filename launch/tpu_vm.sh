#!/usr/bin/env bash
# Train on every host of a Cloud TPU VM slice: ship the code, install it, start the same command everywhere.
#
#   bash launch/tpu_vm.sh TPU_NAME ZONE --config=launch/configs/mlp_digits.py --workdir=gs://BUCKET/runs/digits
#
# Steps, each `gcloud compute tpus tpu-vm ... --worker=all`:
#   1. the code: this checkout (tracked and untracked files, not .venv) copied with `tpu-vm scp`, or, with
#      REPO=URL [REF=branch], cloned/pulled by git on every worker;
#   2. `pip install -e '.[tpu]'` (skip with SKIP_INSTALL=1);
#   3. `python3 -m flaxforge.launch.train FLAGS` on all hosts at once. FLAXFORGE_DISTRIBUTED=1 makes each process call
#      jax.distributed.initialize(), which finds the slice's hosts in the TPU metadata.
# Each host reads only its rows of every batch; process 0 writes logs and metrics; every host writes its
# part of each checkpoint, so --workdir must be on storage all hosts share (gs://).
# Environment: PROJECT (gcloud --project), REMOTE_DIR (default flaxforge, under the remote home),
# MODULE (default flaxforge.launch.train), DRY_RUN=1 (print the gcloud commands instead of running them).
set -euo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: $0 TPU_NAME ZONE [flags for python -m \${MODULE:-flaxforge.launch.train}...]" >&2
  exit 2
fi
name=$1 zone=$2
shift 2
cd "$(dirname "$0")/.."
remote_dir=${REMOTE_DIR:-flaxforge}
for flag in "$@"; do
  if [[ $flag == --workdir=* && $flag != --workdir=gs://* ]]; then
    echo "warning: ${flag#--workdir=} is not gs://; on a multi-host slice every host must see the same workdir" >&2
  fi
done

gcloud_tpu() {  # gcloud_tpu ssh|scp ARGS...: one command on all workers of the slice
  local verb=$1
  shift
  local cmd=(gcloud compute tpus tpu-vm "$verb" "$@" --zone="$zone" --worker=all ${PROJECT:+--project="$PROJECT"})
  if [[ ${DRY_RUN:-0} == 1 ]]; then
    printf '%q ' "${cmd[@]}"
    echo
  else
    "${cmd[@]}"
  fi
}

if [[ -n ${REPO:-} ]]; then
  ref=${REF:-main}
  gcloud_tpu ssh "$name" --command="set -e; [ -d $remote_dir/.git ] || git clone -q $REPO $remote_dir; \
git -C $remote_dir fetch -q origin $ref && git -C $remote_dir checkout -q FETCH_HEAD"
else
  archive=$(mktemp /tmp/flaxforge-XXXXXX.tar.gz)
  trap 'rm -f "$archive"' EXIT
  git ls-files -z --cached --others --exclude-standard | tar -czf "$archive" --null -T -
  gcloud_tpu scp "$archive" "$name:flaxforge.tar.gz"
  gcloud_tpu ssh "$name" --command="mkdir -p $remote_dir && tar -xzf flaxforge.tar.gz -C $remote_dir"
fi

if [[ ${SKIP_INSTALL:-0} != 1 ]]; then
  gcloud_tpu ssh "$name" --command="cd $remote_dir && python3 -m pip install -q -e '.[tpu]'"
fi

run=$(printf '%q ' python3 -m "${MODULE:-flaxforge.launch.train}" "$@")
gcloud_tpu ssh "$name" --command="cd $remote_dir && FLAXFORGE_DISTRIBUTED=1 $run"
