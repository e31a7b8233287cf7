#!/usr/bin/env bash
# The whole stack deployed to an AWS emulator and driven end to end (`make e2e-deployed`, a CI
# step): starts MiniStack on a free port, deploys the template with this machine's binaries
# (LOCAL_PROFILE, debug by default: the ones `cargo test` built), and runs the e2e suite against
# the deployed API:
# - the answers before any handler, in the service's error shape: an unknown route and a method a
#   route does not take (through the catch-all to the router), a missing and a wrong API key (the
#   gateway's own);
# - the seed task through the cron (EventBridge -> cron -> SQS -> process-sqs-records -> Step
#   Functions -> execute-task), a retry through a task's own execution, a FAILED task's callback;
# - a precision run of webhooks handed off by the api to a receiver on this machine;
# - every request's signature checked with the stack's secret;
# - then, the stack updated with RequireApiKey=false, the same without a key.
# Then it checks that every finished task carries its expiresAt (the table's TTL attribute),
# reports the log bytes per invocation and the item size the cost model takes
# (deployed-footprint.py), and destroys the stack and stops the emulator, whatever happened.
#
# Environment:
#   E2E_DEPLOYED_ARGS  e2e's arguments (default: --seed-seconds 120 --tasks 50 --spread-seconds 30)
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

e2e_args=${E2E_DEPLOYED_ARGS:---seed-seconds 120 --tasks 50 --spread-seconds 30}
EMULATOR_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export EMULATOR_PORT LOCAL_PROFILE=${LOCAL_PROFILE:-debug}
log="$root/.emulator/ministack.log"

finish() {
  local status=$?
  if [[ $status -ne 0 && -f "$log" ]]; then
    echo "e2e-deployed: FAILED (exit $status); last lines of $log:" >&2
    tail -n 80 "$log" >&2 || true
  fi
  infra/scripts/stack.sh destroy local >/dev/null 2>&1 || true
  infra/scripts/emulator.sh stop || true
  exit "$status"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

started=$(date +%s)
infra/scripts/emulator.sh start
# With an API key, as production runs: the e2e client sends it, and checks the gateway's answers
# to a missing and a wrong one.
PARAMS="RequireApiKey=true ${PARAMS:-}" infra/scripts/stack.sh deploy local
api_url=$(cat .aws-sam/local/api-url)
endpoint="http://127.0.0.1:$EMULATOR_PORT"
aws_local=(aws --endpoint-url "$endpoint" --region us-east-1)
# The emulator takes any credentials.
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
key_id=$("${aws_local[@]}" cloudformation describe-stacks \
  --stack-name tasks-service-local --query "Stacks[0].Outputs[?OutputKey=='ApiKeyId'].OutputValue" --output text)
API_KEY=$("${aws_local[@]}" apigateway get-api-key \
  --api-key "$key_id" --include-value --query value --output text)
export API_KEY
# The stack's signing secret (Secrets Manager holds the base64 part): the e2e client checks every
# request's signature with it.
secret_id=$("${aws_local[@]}" cloudformation describe-stack-resource --stack-name tasks-service-local \
  --logical-resource-id WebhookSigningSecret --query StackResourceDetail.PhysicalResourceId --output text)
WEBHOOK_SIGNING_SECRET="whsec_$("${aws_local[@]}" secretsmanager get-secret-value --secret-id "$secret_id" \
  --query SecretString --output text)"
export WEBHOOK_SIGNING_SECRET
echo "e2e-deployed: deployed in $(( $(date +%s) - started ))s; e2e $e2e_args against $api_url"
cargo build -p e2e --bin e2e
target_dir=$(cargo metadata --no-deps --format-version 1 |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
# shellcheck disable=SC2086 # E2E_DEPLOYED_ARGS is a list of words
API_URL="$api_url" "$target_dir/debug/e2e" $e2e_args

# Data with a lifetime: every finished task carries its expiresAt. (MiniStack's CloudFormation
# does not apply the table's TimeToLiveSpecification: a test of the template checks it.)
table=tasksTable-local
finished_count() {
  "${aws_local[@]}" dynamodb scan --table-name "$table" \
    --filter-expression "taskStatus IN (:completed, :failed, :cancelled) AND $1" \
    --expression-attribute-values \
    '{":completed": {"S": "COMPLETED"}, ":failed": {"S": "FAILED"}, ":cancelled": {"S": "CANCELLED"}}' \
    --select COUNT --query Count --output text
}
expiring=$(finished_count "attribute_exists(expiresAt)")
kept=$(finished_count "attribute_not_exists(expiresAt)")
echo "e2e-deployed: finished tasks with expiresAt: $expiring, without: $kept"
if [[ "$expiring" -eq 0 || "$kept" -ne 0 ]]; then
  echo "e2e-deployed: FAIL: every finished task must carry expiresAt" >&2
  exit 1
fi
# The log bytes per invocation and the item size the real binaries leave: the cost model's
# measured inputs (crates/tasks-sim/src/cost.rs, Deployment).
python3 infra/scripts/deployed-footprint.py "$endpoint" local

# The API key off: the same stack updated with RequireApiKey=false answers without a key (the
# error shape again, and a short run of webhooks created and read without one).
PARAMS="RequireApiKey=false ${PARAMS:-}" infra/scripts/stack.sh deploy local >/dev/null
echo "e2e-deployed: updated with RequireApiKey=false; e2e without a key"
API_URL="$(cat .aws-sam/local/api-url)" API_KEY='' "$target_dir/debug/e2e" --precision-only --tasks 5 --spread-seconds 5
echo "e2e-deployed: PASS in $(( $(date +%s) - started ))s"
