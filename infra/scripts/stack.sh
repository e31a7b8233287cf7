#!/usr/bin/env bash
# Deploys or destroys the SAM stack (`make deploy-local|destroy-local|deploy-dev|destroy-dev`).
# Usage: infra/scripts/stack.sh deploy|destroy local|dev|prod
#   local: LocalStack at $LOCALSTACK_ENDPOINT (default http://localhost:4566), via samlocal, dummy credentials.
#   dev/prod: real AWS; AWS_PROFILE must be set; region = AWS_REGION, AWS_DEFAULT_REGION, the
#             profile's region, else us-east-1.
# Expects the project venv's bin (sam, samlocal, aws, cargo-lambda) first on PATH (the Makefile does it).
set -euo pipefail

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
    endpoint=${LOCALSTACK_ENDPOINT:-http://localhost:4566}
    if ! curl -fsS --max-time 5 "$endpoint/_localstack/health" >/dev/null 2>&1; then
      cat >&2 <<MSG
LocalStack does not answer at $endpoint/_localstack/health.
Start it first (it needs a Docker engine: Lambda code runs in containers), e.g.:

  docker run --rm -it -p 4566:4566 -e SQS_ENDPOINT_STRATEGY=domain \\
    -v /var/run/docker.sock:/var/run/docker.sock localstack/localstack

The functions are arm64: on an x86_64 Linux host, enable Docker's arm64 emulation once with
  docker run --privileged --rm tonistiigi/binfmt --install arm64
MSG
      exit 1
    fi
    export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
    export AWS_ENDPOINT_URL="$endpoint"
    sam_deploy=(samlocal)
    aws_cli=(aws --endpoint-url "$endpoint")
    ;;
  dev | prod)
    if [[ -z "${AWS_PROFILE:-}" ]]; then
      echo "AWS_PROFILE is not set: run e.g. \`AWS_PROFILE=my-profile make ${action}-$env\`" >&2
      exit 1
    fi
    region=${AWS_REGION:-${AWS_DEFAULT_REGION:-$(aws configure get region --profile "$AWS_PROFILE" 2>/dev/null || true)}}
    region=${region:-us-east-1}
    export AWS_REGION=$region AWS_DEFAULT_REGION=$region
    sam_deploy=(sam)
    aws_cli=(aws --profile "$AWS_PROFILE" --region "$region")
    profile_args=(--profile "$AWS_PROFILE" --region "$region")
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
    echo "==> sam build ($env)"
    sam build --template-file "$template" --build-dir "$build_dir" \
      --config-file "$samconfig" --config-env "$env"
    echo "==> ${sam_deploy[*]} deploy ($env, stack $stack)"
    "${sam_deploy[@]}" deploy --template-file "$build_dir/template.yaml" \
      --config-file "$samconfig" --config-env "$env" --stack-name "$stack" \
      --no-fail-on-empty-changeset ${profile_args[@]+"${profile_args[@]}"}
    echo "==> stack outputs"
    "${aws_cli[@]}" cloudformation describe-stacks --stack-name "$stack" \
      --query 'Stacks[0].Outputs' --output table
    if [[ "$env" == local ]]; then
      api_id=$(outputs ApiId)
      url="$endpoint/restapis/$api_id/local/_user_request_"
      cat <<MSG

API (LocalStack): $url
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
        echo "  API key required (x-api-key): ${aws_cli[*]} apigateway get-api-key --api-key $key_id --include-value --query value --output text"
      fi
    fi
    ;;
  destroy)
    echo "==> ${sam_deploy[*]} delete ($env, stack $stack)"
    "${sam_deploy[@]}" delete --stack-name "$stack" --config-file "$samconfig" --config-env "$env" \
      ${profile_args[@]+"${profile_args[@]}"} ${SAM_DELETE_ARGS:-}
    ;;
  *)
    echo "unknown action: $action (deploy or destroy)" >&2
    exit 2
    ;;
esac
