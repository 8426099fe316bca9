#!/usr/bin/env bash
# N CPU processes on this machine as one JAX cluster (one CPU device each): a stand-in for a multi-host slice.
#
#   bash launch/local_multiprocess.sh 2 --config=launch/configs/tiny.py --workdir=/tmp/mp
#   MODULE=flaxforge.launch.eval bash launch/local_multiprocess.sh 2 --workdir=/tmp/mp
#
# Each line of output is prefixed with its process index. The script waits for all processes; when one
# fails it kills the others and exits with the first failure's status.
# It runs in the repository root, so relative paths in the flags are relative to that.
# Environment: PYTHON (default .venv/bin/python, else python), MODULE (default flaxforge.launch.train),
# PORT (coordinator port, default a free one), FLAXFORGE_HEARTBEAT_S (default 10: a dead peer is noticed fast).
set -u

if [[ $# -lt 1 || ! "$1" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 NUM_PROCESSES [flags for python -m \${MODULE:-flaxforge.launch.train}...]" >&2
  exit 2
fi
num=$1
shift
cd "$(dirname "$0")/.." || exit 2
python=${PYTHON:-$([[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python)}
module=${MODULE:-flaxforge.launch.train}
port=${PORT:-$("$python" -c 'import socket; s = socket.socket(); s.bind(("localhost", 0)); print(s.getsockname()[1])')}

# One CPU device per process (more per process can deadlock gloo with deep queues): drop any forced count.
export XLA_FLAGS=$(echo "${XLA_FLAGS:-}" | sed -E 's/--xla_force_host_platform_device_count=[0-9]+//g')
export JAX_NUM_CPU_DEVICES=1 JAX_PLATFORMS=cpu PYTHONUNBUFFERED=1
export FLAXFORGE_HEARTBEAT_S=${FLAXFORGE_HEARTBEAT_S:-10}

declare -A index_of
pids=()
for ((i = 0; i < num; i++)); do
  "$python" -m "$module" --coordinator_address="localhost:$port" --num_processes="$num" --process_id="$i" "$@" \
    > >(sed -u "s/^/[$i] /") 2>&1 &
  pids+=($!)
  index_of[$!]=$i
done

kill_rest() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  # A process blocked in a collective may ignore SIGTERM (JAX's preemption notifier takes it): wait up to
  # 3 s, then SIGKILL what is left.
  for _ in {1..30}; do
    alive=0
    for pid in "${pids[@]}"; do [[ $(ps -o stat= -p "$pid" 2>/dev/null) == [^Z]* ]] && alive=1; done
    ((alive)) || return 0
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null; done
}
# Ctrl-C reaches every process from the terminal; a SIGTERM for the launcher is passed on. Either way the
# trainers checkpoint and stop together. A second signal kills them all.
signalled=0
on_signal() {
  if ((signalled++)); then
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null; done
    exit 130
  fi
  [[ $1 == TERM ]] && for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
}
trap 'on_signal INT' INT
trap 'on_signal TERM' TERM

status=0
running=("${pids[@]}")
while ((${#running[@]})); do
  done_pid=
  wait -n -p done_pid "${running[@]}"
  rc=$?
  [[ -n ${done_pid:-} ]] || continue  # woken by a signal, not by an exit
  rest=()
  for pid in "${running[@]}"; do [[ $pid == "$done_pid" ]] || rest+=("$pid"); done
  running=("${rest[@]}")
  if [[ $rc -ne 0 && $status -eq 0 ]]; then
    status=$rc
    echo "[launcher] process ${index_of[$done_pid]} exited with status $rc; stopping the others" >&2
    kill_rest
  fi
done
wait  # the output prefixers
exit $status
