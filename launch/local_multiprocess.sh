#!/usr/bin/env bash
# N CPU processes on this machine as one JAX cluster (one CPU device each): a stand-in for a multi-host slice.
#
#   bash launch/local_multiprocess.sh 2 --config=launch/configs/tiny.py --workdir=/tmp/mp
#   MODULE=flaxforge.launch.eval bash launch/local_multiprocess.sh 2 --workdir=/tmp/mp
#
# Process 0's output comes as a one-process run's would; the others' lines are prefixed with their index.
# The script waits for all processes; when one fails it stops the others and exits with the first failure's
# status, however fast they end. Ctrl-C (or a SIGTERM to the script) makes every process checkpoint at the
# same step and stop; the same command resumes.
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
free_port='import socket; s = socket.socket(); s.bind(("localhost", 0)); print(s.getsockname()[1])'
port=${PORT:-$("$python" -c "$free_port" 2>/dev/null || python3 -c "$free_port")}

# One CPU device per process (more per process can deadlock gloo with deep queues): drop any forced count.
export XLA_FLAGS=$(echo "${XLA_FLAGS:-}" | sed -E 's/--xla_force_host_platform_device_count=[0-9]+//g')
export JAX_NUM_CPU_DEVICES=1 JAX_PLATFORMS=cpu PYTHONUNBUFFERED=1
export FLAXFORGE_HEARTBEAT_S=${FLAXFORGE_HEARTBEAT_S:-10}

# Process 0 writes straight to this terminal (its progress bar and final JSON line, as a one-process run);
# the others' lines are prefixed with their index. The prefixers ignore INT and TERM: a Ctrl-C reaches the
# whole process group, and a prefixer that died first would leave its trainer blocked on a full pipe.
declare -A index_of
pids=()
for ((i = 0; i < num; i++)); do
  command=("$python" -m "$module" --coordinator_address="localhost:$port" --num_processes="$num" --process_id="$i" "$@")
  if ((i == 0)); then
    "${command[@]}" &
  else
    "${command[@]}" > >(trap '' INT TERM; exec sed -u "s/^/[$i] /") 2>&1 &
  fi
  pids+=($!)
  index_of[$!]=$i
done

alive() { kill -0 "$1" 2>/dev/null; }

kill_rest() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  # A process blocked in a collective may ignore SIGTERM (JAX's preemption notifier takes it): wait up to
  # 3 s, then SIGKILL what is left.
  for _ in {1..30}; do
    local any=0
    for pid in "${pids[@]}"; do alive "$pid" && any=1; done
    ((any)) || return 0
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

# Polls rather than `wait -n`: processes that end before the loop starts are reaped already, and `wait -n`
# then answers "no such job" at once, forever. `wait PID` still returns a reaped child's status.
status=0
running=("${pids[@]}")
while ((${#running[@]})); do
  rest=()
  for pid in "${running[@]}"; do
    if alive "$pid"; then
      rest+=("$pid")
      continue
    fi
    wait "$pid"
    rc=$?
    if [[ $rc -ne 0 && $status -eq 0 ]]; then
      status=$rc
      echo "[launcher] process ${index_of[$pid]} exited with status $rc; stopping the others" >&2
      kill_rest
    fi
  done
  running=("${rest[@]}")
  ((${#running[@]})) && sleep 0.2
done
wait  # the output prefixers
exit $status
