#!/usr/bin/env bash
# Starts or stops MiniStack, the free AWS emulator `make deploy-local` deploys to
# (`make emulator`, `make emulator-stop`).
# Usage: infra/scripts/emulator.sh start|stop
#
# It listens on 127.0.0.1:$EMULATOR_PORT (4566) only, keeps everything in memory, and runs the
# functions as processes of this machine: the SDK in each function reaches the emulator through
# AWS_ENDPOINT_URL, which the functions inherit from it. Its log and process id are in .emulator/.
# Expects .venv-emulator (`make emulator-venv`).
set -euo pipefail

action=${1:?usage: emulator.sh start|stop}
root=$(cd "$(dirname "$0")/../.." && pwd)
port=${EMULATOR_PORT:-4566}
endpoint="http://127.0.0.1:$port"
state_dir="$root/.emulator"
pid_file="$state_dir/ministack.pid"
log="$state_dir/ministack.log"

healthy() {
  curl -fsS --max-time 2 "$endpoint/_localstack/health" >/dev/null 2>&1
}

case "$action" in
  start)
    if healthy; then
      echo "emulator: already answering at $endpoint"
      exit 0
    fi
    mkdir -p "$state_dir"
    # Its own process group (setsid), so that stop also ends the function processes it ran.
    BIND_HOST=127.0.0.1 GATEWAY_PORT="$port" AWS_ENDPOINT_URL="$endpoint" \
      SQS_ENDPOINT_STRATEGY=domain AWS_DEFAULT_REGION=us-east-1 \
      setsid "$root/.venv-emulator/bin/ministack" >"$log" 2>&1 &
    echo $! >"$pid_file"
    for _ in $(seq 300); do
      if healthy; then
        echo "emulator: MiniStack (pid $(cat "$pid_file")) answering at $endpoint; log: $log"
        exit 0
      fi
      if ! kill -0 "$(cat "$pid_file")" 2>/dev/null; then
        echo "emulator: MiniStack exited before answering; last lines of $log:" >&2
        tail -n 30 "$log" >&2
        exit 1
      fi
      sleep 0.2
    done
    echo "emulator: no answer at $endpoint/_localstack/health within 60 s; see $log" >&2
    exit 1
    ;;
  stop)
    if [[ ! -f "$pid_file" ]]; then
      echo "emulator: not started by this project (no $pid_file)"
      exit 0
    fi
    pid=$(cat "$pid_file")
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
    rm -f "$pid_file"
    echo "emulator: stopped"
    ;;
  *)
    echo "unknown action: $action (start or stop)" >&2
    exit 2
    ;;
esac
