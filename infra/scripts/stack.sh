#!/usr/bin/env bash
# Deploys or destroys the SAM stack (`make deploy-local|destroy-local|deploy-dev|destroy-dev`).
# Usage: infra/scripts/stack.sh deploy|destroy local|dev|prod
#   local: an AWS emulator at $EMULATOR_ENDPOINT: LocalStack or MiniStack that you run; by default
#          MiniStack on http://127.0.0.1:$EMULATOR_PORT (4566), started here when nothing answers
#          there (`make emulator`). The
#          functions are this machine's own binaries (LOCAL_PROFILE: release, or debug), staged by
#          infra/scripts/stage-local.py, since the emulator runs them on this host.
#   dev/prod: real AWS, with any credentials the AWS CLI resolves (AWS_PROFILE, the environment's
#             keys, SSO or role credentials), checked first with `aws sts get-caller-identity`;
#             region = AWS_REGION, AWS_DEFAULT_REGION, the profile's region, else us-east-1.
# PARAMS="Key=Value ..." adds stack parameters to the stage's own.
# Expects the project venv's bin (sam, samlocal, aws, cargo-lambda) first on PATH (the Makefile does it).
set -euo pipefail
# shellcheck source=infra/scripts/aws-credentials.sh
source "$(dirname "$0")/aws-credentials.sh"

action=${1:?usage: stack.sh deploy|destroy local|dev|prod}
env=${2:?usage: stack.sh deploy|destroy local|dev|prod}
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

samconfig="$root/infra/samconfig.toml"
template="infra/template.yaml"
build_dir=".aws-sam/build"
stack="tasks-service-$env"
export SAM_CLI_TELEMETRY=0

case "$env" in
  local)
    given_endpoint=${EMULATOR_ENDPOINT:-${LOCALSTACK_ENDPOINT:-}}
    endpoint=${given_endpoint:-http://127.0.0.1:${EMULATOR_PORT:-4566}}
    if ! curl -fsS --max-time 5 "$endpoint/_localstack/health" >/dev/null 2>&1; then
      if [[ "$action" == destroy ]]; then
        echo "no emulator answers at $endpoint: nothing to destroy"
        exit 0
      fi
      if [[ -n "$given_endpoint" ]]; then
        echo "no emulator answers at $endpoint/_localstack/health; start it first" >&2
        exit 1
      fi
      infra/scripts/emulator.sh start
    fi
    export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
    export AWS_ENDPOINT_URL="$endpoint"
    sam_deploy=(samlocal)
    aws_cli=(aws --endpoint-url "$endpoint")
    ;;
  dev | prod)
    # Any credentials the AWS CLI resolves: a profile (AWS_PROFILE), the environment's keys,
    # SSO-exported or role credentials, an instance or container role.
    use_aws_credentials "make ${action}-$env"
    sam_deploy=(sam)
    aws_cli=(aws "${profile_args[@]}")
    # The stage's parameters (the samconfig's are replaced by any given here), then PARAMS.
    # shellcheck disable=SC2206 # PARAMS is a list of Key=Value words
    case "$env" in
      dev) overrides=(Stage=dev ${PARAMS:-}) ;;
      prod) overrides=(Stage=prod RequireApiKey=auto LogRetentionDays=90 ${PARAMS:-}) ;;
    esac
    ;;
  *)
    echo "unknown environment: $env (local, dev or prod)" >&2
    exit 2
    ;;
esac

outputs() {
  "${aws_cli[@]}" cloudformation describe-stacks --stack-name "$stack" \
    --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text
}

case "$action" in
  deploy)
    if [[ "$env" == local ]]; then
      profile=${LOCAL_PROFILE:-release}
      case "$(uname -m)" in
        aarch64 | arm64) architecture=arm64 ;;
        *) architecture=x86_64 ;;
      esac
      echo "==> cargo build ($profile, this machine's $architecture)"
      profile_flag=()
      [[ "$profile" == release ]] && profile_flag=(--release)
      # shellcheck disable=SC2046 # one --bin per function
      cargo build ${profile_flag[@]+"${profile_flag[@]}"} $(printf -- '--bin %s ' api cron process-sqs-records execute-task update-status)
      target_dir=$(cargo metadata --no-deps --format-version 1 |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
      build_dir=".aws-sam/local"
      python3 infra/scripts/stage-local.py "$target_dir/$profile" "$build_dir"
      # The emulator's receivers are on this machine: private addresses allowed. Its
      # CloudFormation refuses metric math: those two alarms are left out.
      # shellcheck disable=SC2206 # PARAMS is a list of Key=Value words
      overrides=(Stage=local RequireApiKey=false LogRetentionDays=1 WebhookAllowPrivate=true
        MetricMathAlarms=false "Architecture=$architecture" ${PARAMS:-})
      profile_args=(--parameter-overrides "${overrides[@]}")
    else
      echo "==> sam build ($env)"
      sam build --template-file "$template" --build-dir "$build_dir" \
        --config-file "$samconfig" --config-env "$env"
      profile_args+=(--parameter-overrides "${overrides[@]}")
    fi
    echo "==> ${sam_deploy[*]} deploy ($env, stack $stack)"
    # Upload progress is one line of carriage returns per function: left out.
    "${sam_deploy[@]}" deploy --template-file "$build_dir/template.yaml" \
      --config-file "$samconfig" --config-env "$env" --stack-name "$stack" \
      --no-fail-on-empty-changeset ${profile_args[@]+"${profile_args[@]}"} 2>&1 |
      tr '\r' '\n' | sed '/^[[:space:]]*Uploading to /d'
    echo "==> stack outputs"
    "${aws_cli[@]}" cloudformation describe-stacks --stack-name "$stack" \
      --query 'Stacks[0].Outputs' --output table
    if [[ "$env" == local ]]; then
      api_id=$(outputs ApiId)
      python3 infra/scripts/emulator-api-gaps.py "$endpoint" "$api_id" local
      url="$endpoint/restapis/$api_id/local/_user_request_"
      echo "$url" >"$build_dir/api-url"
      cat <<MSG

API (emulator): $url
Try:
  curl -s -X POST $url/tasks -H 'content-type: application/json' \\
    -d '{"minutes":2,"webhook":{"url":"https://example.com/hook"}}'
  curl -s $url/tasks/<id>
MSG
    else
      url=$(outputs ApiUrl)
      key_id=$(outputs ApiKeyId)
      cat <<MSG

API: $url
Try:
  curl -s $url/health
  curl -s -X POST $url/tasks -H 'content-type: application/json' \\
    -d '{"minutes":2,"webhook":{"url":"https://example.com/hook"}}'
MSG
      if [[ -n "$key_id" && "$key_id" != None ]]; then
        key=$("${aws_cli[@]}" apigateway get-api-key --api-key "$key_id" --include-value --query value --output text)
        cat <<MSG
The API needs its key in x-api-key on every route but /health and /openapi.json:
  curl -s $url/tasks?status=SCHEDULED -H 'x-api-key: $key'
  API_URL=$url API_KEY=$key make run-e2e-test
MSG
      fi
    fi
    ;;
  destroy)
    echo "==> ${sam_deploy[*]} delete ($env, stack $stack)"
    # shellcheck disable=SC2086 # SAM_DELETE_ARGS is a list of words
    "${sam_deploy[@]}" delete --stack-name "$stack" --config-file "$samconfig" --config-env "$env" \
      ${profile_args[@]+"${profile_args[@]}"} ${SAM_DELETE_ARGS:-}
    ;;
  *)
    echo "unknown action: $action (deploy or destroy)" >&2
    exit 2
    ;;
esac
