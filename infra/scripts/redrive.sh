#!/usr/bin/env bash
# Moves the messages of a stage's dead-letter queue back to its dispatch queue (`make redrive
# STAGE=dev|prod|local`), with SQS's own message move task, and waits for it to end.
# Usage: infra/scripts/redrive.sh [local|dev|prod]   (default: $STAGE, else dev)
#   The queues are the stack's (tasks-service-<stage>) outputs DeadLetterQueueUrl and QueueUrl.
#   Credentials and region as infra/scripts/stack.sh takes them: dev/prod any credentials the AWS
#   CLI resolves (AWS_PROFILE, the environment's keys, SSO or role credentials), checked first;
#   local the emulator at $EMULATOR_ENDPOINT (default http://127.0.0.1:$EMULATOR_PORT, 4566).
#   REDRIVE_TIMEOUT_SECONDS (600) bounds the wait, REDRIVE_POLL_SECONDS (5) paces it.
#
# Why a redrive is safe (docs/deploy.md, "Runbook"): a message names tasks and the delivery
# series they were queued for, never an action to repeat, and process-sqs-records starts nothing
# that the tasks' state does not still ask for:
# - a task message (`{"id", "timestamp", "series"}`) goes through `start_task`
#   (crates/tasks-core/src/flow/start.rs): a task that is gone, FAILED, COMPLETED or CANCELLED is
#   skipped, a message of an older series is superseded, and the execution is named
#   `<id>-<series>` (`Task::execution_name`), so one that runs already is found running. One
#   that has ended goes to `recovery::after_ended_execution` (crates/tasks-core/src/rules/recovery.rs), which
#   runs the task again only if no attempt began in the series, and otherwise records FAILED
#   rather than send twice, as the cron's sweeps would;
# - a slot message starts the slot's execution under the slot's own name (`start_slots` in
#   crates/tasks-core/src/flow/start.rs), a no-op when it has run; otherwise its run begins each task's
#   attempt with a write conditional on the task's series and attempt count, so a task that
#   moved on is skipped and an attempt that another run began is not begun again;
# - a hand-over (a task message with the `result` of its slot's attempt) goes on from that
#   report in the task's own execution, under the same conditions.
# What a redrive cannot undo: a task the sweeps recorded FAILED meanwhile stays FAILED (its
# message is skipped), and a message that cannot be read comes back to this queue after three
# more receives.
set -euo pipefail
# shellcheck source=infra/scripts/aws-credentials.sh
source "$(dirname "$0")/aws-credentials.sh"

env=${1:-${STAGE:-dev}}
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
stack="tasks-service-$env"
timeout=${REDRIVE_TIMEOUT_SECONDS:-600}
pause=${REDRIVE_POLL_SECONDS:-5}

# Endpoint and credentials exactly as stack.sh reaches each stage.
case "$env" in
  local)
    endpoint=${EMULATOR_ENDPOINT:-${LOCALSTACK_ENDPOINT:-http://127.0.0.1:${EMULATOR_PORT:-4566}}}
    if ! curl -fsS --max-time 5 "$endpoint/_localstack/health" >/dev/null 2>&1; then
      echo "no emulator answers at $endpoint/_localstack/health: nothing to redrive" >&2
      exit 1
    fi
    export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
    aws_cli=(aws --endpoint-url "$endpoint")
    ;;
  dev | prod)
    use_aws_credentials "make redrive STAGE=$env"
    aws_cli=(aws "${profile_args[@]}")
    ;;
  *)
    echo "unknown stage: $env (local, dev or prod)" >&2
    exit 2
    ;;
esac

output() {
  "${aws_cli[@]}" cloudformation describe-stacks --stack-name "$stack" \
    --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text
}

# "<arn>\t<visible>\t<in flight>" of a queue.
queue_state() {
  "${aws_cli[@]}" sqs get-queue-attributes --queue-url "$1" \
    --attribute-names QueueArn ApproximateNumberOfMessages ApproximateNumberOfMessagesNotVisible \
    --query '[Attributes.QueueArn, Attributes.ApproximateNumberOfMessages, Attributes.ApproximateNumberOfMessagesNotVisible]' \
    --output text
}

dlq_url=$(output DeadLetterQueueUrl)
queue_url=$(output QueueUrl)
if [[ -z "$dlq_url" || "$dlq_url" == None || -z "$queue_url" || "$queue_url" == None ]]; then
  echo "stack $stack has no DeadLetterQueueUrl and QueueUrl outputs: is it deployed (make deploy-$env)?" >&2
  exit 1
fi
dlq_state=$(queue_state "$dlq_url")
read -r dlq_arn waiting in_flight <<<"$dlq_state"
destination_state=$(queue_state "$queue_url")
read -r queue_arn _ <<<"$destination_state"
echo "==> ${dlq_arn##*:}: $waiting message(s) waiting, $in_flight being read; destination ${queue_arn##*:}"
if [[ "$waiting" == 0 ]]; then
  if [[ "$in_flight" != 0 ]]; then
    echo "every message is being read (a receive hides it for the queue's visibility timeout): try again in a minute" >&2
    exit 1
  fi
  echo "nothing to redrive"
  exit 0
fi

# An emulator without SQS's message move tasks (MiniStack): the same move, one message at a
# time (receive from the dead-letter queue, send its body to the dispatch queue, delete it).
move_one_by_one() {
  local moved=0 handle
  dir=$(mktemp -d)
  trap 'rm -rf "$dir"' EXIT
  while "${aws_cli[@]}" sqs receive-message --queue-url "$dlq_url" --max-number-of-messages 10 \
    --visibility-timeout 60 --output json >"$dir/batch.json" &&
    python3 - "$dir" <<'PY'
import json, pathlib, sys
dir = pathlib.Path(sys.argv[1])
text = (dir / "batch.json").read_text().strip()
messages = json.loads(text).get("Messages", []) if text else []
for n, message in enumerate(messages):
    (dir / f"{n}.body").write_text(message["Body"])
    (dir / f"{n}.handle").write_text(message["ReceiptHandle"])
sys.exit(0 if messages else 1)
PY
  do
    for body in "$dir"/*.body; do
      handle=$(<"${body%.body}.handle")
      "${aws_cli[@]}" sqs send-message --queue-url "$queue_url" --message-body "file://$body" >/dev/null
      "${aws_cli[@]}" sqs delete-message --queue-url "$dlq_url" --receipt-handle "$handle"
      rm -f "$body" "${body%.body}.handle"
      moved=$((moved + 1))
    done
  done
  echo "==> moved $moved message(s) one by one"
}

if ! handle=$("${aws_cli[@]}" sqs start-message-move-task --source-arn "$dlq_arn" \
  --destination-arn "$queue_arn" --query TaskHandle --output text 2>&1); then
  if [[ "$env" == local && "$handle" == *InvalidAction* ]]; then
    echo "==> the emulator has no message move tasks: moving the messages one by one"
    move_one_by_one
    exit 0
  fi
  echo "$handle" >&2
  echo "could not start the move (one may be running already: aws sqs list-message-move-tasks --source-arn $dlq_arn)" >&2
  exit 1
fi
echo "==> move task started: $handle"

# The task's handle is listed only while it runs: the latest task of the queue is this one.
started=$(date +%s)
while :; do
  task=$("${aws_cli[@]}" sqs list-message-move-tasks --source-arn "$dlq_arn" --max-results 1 \
    --query 'Results[0].[Status, ApproximateNumberOfMessagesMoved, ApproximateNumberOfMessagesToMove, FailureReason]' \
    --output text)
  read -r status moved to_move reason <<<"$task"
  echo "    $status: $moved of $to_move moved"
  case "$status" in
    COMPLETED)
      echo "==> redrive completed: $moved message(s) back on ${queue_arn##*:}"
      exit 0
      ;;
    FAILED | CANCELLED | CANCELLING)
      echo "redrive $status${reason:+ ($reason)}; $moved message(s) moved" >&2
      exit 1
      ;;
  esac
  if (($(date +%s) - started >= timeout)); then
    echo "still $status after ${timeout}s; it goes on: aws sqs list-message-move-tasks --source-arn $dlq_arn" >&2
    exit 1
  fi
  sleep "$pause"
done
