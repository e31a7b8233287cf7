#!/usr/bin/env bash
# Short end-to-end run against the local runner (`make e2e-ci`, part of `make test`):
# builds tasks-local and e2e, starts tasks-local (which starts its own moto) on a free port,
# waits for GET /health (deadline, no fixed sleep), runs the e2e client against it (with the
# run's signing secret, so every webhook's signature is checked), and always stops the runner and
# everything it started.
#
# Environment:
#   E2E_ARGS                 e2e's arguments (default: --tasks 50 --spread-seconds 30 --seed-seconds 10)
#   E2E_HEALTH_TIMEOUT       seconds to wait for /health (default 120)
#   CRON_INTERVAL_SECONDS    passed to tasks-local (default 5 here: a short run needs a fast cron)
#   PORT                     port for tasks-local (default: a free one)
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

e2e_args=${E2E_ARGS:---tasks 50 --spread-seconds 30 --seed-seconds 10}
health_timeout=${E2E_HEALTH_TIMEOUT:-120}
export CRON_INTERVAL_SECONDS=${CRON_INTERVAL_SECONDS:-5}
# The runner's moto comes from the project venv (`make venv`).
export PATH="$root/.venv/bin:$PATH"

echo "e2e-ci: building tasks-local and e2e"
cargo build -p tasks-local --bin tasks-local -p e2e --bin e2e
target_dir=$(cargo metadata --no-deps --format-version 1 |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
runner="$target_dir/debug/tasks-local"
client="$target_dir/debug/e2e"

port=${PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
export PORT=$port
api_url="http://127.0.0.1:$port"
log_dir="$target_dir/e2e-ci"
mkdir -p "$log_dir"
log="$log_dir/tasks-local.log"

# The signing secret is the run's own, so the e2e client checks every request's signature.
WEBHOOK_SIGNING_SECRETS="whsec_$(python3 -c 'import base64,os; print(base64.b64encode(os.urandom(32)).decode())')"
export WEBHOOK_SIGNING_SECRETS WEBHOOK_SIGNING_SECRET=$WEBHOOK_SIGNING_SECRETS

# Own process group (setsid), so that stopping it also stops the moto server it started.
if command -v setsid >/dev/null; then
  NO_COLOR=1 setsid "$runner" >"$log" 2>&1 &
else
  NO_COLOR=1 "$runner" >"$log" 2>&1 &
fi
runner_pid=$!

stop_runner() {
  local status=$?
  if kill -0 "$runner_pid" 2>/dev/null; then
    kill -TERM -- "-$runner_pid" 2>/dev/null || kill -TERM "$runner_pid" 2>/dev/null || true
    for _ in $(seq 50); do
      kill -0 "$runner_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL -- "-$runner_pid" 2>/dev/null || true
  fi
  wait "$runner_pid" 2>/dev/null || true
  if [[ $status -ne 0 ]]; then
    echo "e2e-ci: FAILED (exit $status); last lines of $log:" >&2
    tail -n 60 "$log" >&2 || true
  fi
  exit "$status"
}
trap stop_runner EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "e2e-ci: tasks-local (pid $runner_pid) on $api_url, waiting up to ${health_timeout}s for /health"
python3 - "$api_url/health" "$health_timeout" "$runner_pid" <<'PY'
import os, sys, time, urllib.request
url, timeout, pid = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
deadline = time.monotonic() + timeout
last = None
while True:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            if response.status == 200:
                print(f"e2e-ci: healthy after {timeout - (deadline - time.monotonic()):.1f}s")
                break
    except Exception as error:
        last = error
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit("e2e-ci: tasks-local exited before answering /health")
    if time.monotonic() > deadline:
        sys.exit(f"e2e-ci: no healthy answer from {url} within {timeout:.0f}s (last: {last})")
    time.sleep(0.2)
PY

echo "e2e-ci: e2e $e2e_args"
# shellcheck disable=SC2086 # E2E_ARGS is a list of words
API_URL="$api_url" "$client" $e2e_args
