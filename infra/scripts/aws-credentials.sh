# shellcheck shell=bash
# Sourced by infra/scripts/stack.sh and infra/scripts/redrive.sh for the dev and prod stages:
# any credentials the AWS CLI resolves (AWS_PROFILE, the environment's keys, SSO-exported or
# role credentials, an instance or container role), checked first with
# `aws sts get-caller-identity`; region = AWS_REGION, AWS_DEFAULT_REGION, the profile's region,
# else us-east-1.
#
# use_aws_credentials <make command to suggest>: sets `region`, `account` and `profile_args`
# (--profile, --region for the aws CLI), exports AWS_REGION and AWS_DEFAULT_REGION, and exits 1
# with what to do when no credentials work.
use_aws_credentials() {
  local command=$1
  profile_args=()
  [[ -n "${AWS_PROFILE:-}" ]] && profile_args=(--profile "$AWS_PROFILE")
  region=${AWS_REGION:-${AWS_DEFAULT_REGION:-$(aws configure get region ${profile_args[@]+"${profile_args[@]}"} 2>/dev/null || true)}}
  region=${region:-us-east-1}
  export AWS_REGION=$region AWS_DEFAULT_REGION=$region
  profile_args+=(--region "$region")
  if ! account=$(aws sts get-caller-identity "${profile_args[@]}" --query Account --output text 2>&1); then
    cat >&2 <<MSG
No AWS credentials the AWS CLI can use ($account).
Give a profile (AWS_PROFILE=my-profile $command), or export AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), e.g. from \`aws configure export-credentials\`.
MSG
    exit 1
  fi
  echo "==> AWS account $account, region $region"
}
