//! `infra/scripts/stack.sh` (`make deploy-dev` / `deploy-prod`) against stub `aws` and `sam`
//! commands that record how they were called: it takes any credentials the AWS CLI resolves
//! (here the environment's keys, no profile), checks them first, keeps the stage and passes
//! `PARAMS` on, and refuses clearly when there are none. `infra/scripts/redrive.sh` (`make
//! redrive`) against the same stubs: it finds the stage's queues and moves the dead-letter queue
//! back to the dispatch queue.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// `aws` as the scripts call it: an account for `sts get-caller-identity` when the environment
/// has keys, no region configured, the stack's outputs, the queues' ARNs and depths (three
/// messages in the dead-letter queue) and a message move task that has completed; `sam` does
/// nothing. Both log their arguments, one call a line.
const STUB: &str = r#"#!/usr/bin/env bash
echo "$(basename "$0") $*" >>"$STUB_LOG"
case "$(basename "$0") $*" in
  "aws sts get-caller-identity"*)
    [[ -n "${AWS_ACCESS_KEY_ID:-}" ]] || { echo "Unable to locate credentials" >&2; exit 255; }
    echo 123456789012 ;;
  "aws configure get region"*) exit 1 ;;
  *"OutputKey=='ApiUrl'"*) echo "https://abc.execute-api.eu-west-1.amazonaws.com/dev" ;;
  *"OutputKey=='ApiKeyId'"*) echo "None" ;;
  *"OutputKey=='QueueUrl'"*) echo "https://sqs.eu-west-1.amazonaws.com/123456789012/tasksQueue-dev" ;;
  *"OutputKey=='DeadLetterQueueUrl'"*)
    echo "https://sqs.eu-west-1.amazonaws.com/123456789012/tasksQueue-dev-dlq" ;;
  *" sqs get-queue-attributes --queue-url "*"-dlq "*)
    printf 'arn:aws:sqs:eu-west-1:123456789012:tasksQueue-dev-dlq\t3\t0\n' ;;
  *" sqs get-queue-attributes "*) printf 'arn:aws:sqs:eu-west-1:123456789012:tasksQueue-dev\t0\t0\n' ;;
  *" sqs start-message-move-task "*) echo "task-handle-1" ;;
  *" sqs list-message-move-tasks "*) printf 'COMPLETED\t3\t3\tNone\n' ;;
esac
exit 0
"#;

struct Stubs {
    dir: PathBuf,
}

impl Stubs {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("stack-sh-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for command in ["aws", "sam"] {
            let path = dir.join(command);
            std::fs::write(&path, STUB).unwrap();
            Command::new("chmod").arg("+x").arg(&path).status().unwrap();
        }
        Stubs { dir }
    }

    fn log(&self) -> PathBuf {
        self.dir.join("calls.log")
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.log())
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// `stack.sh deploy <env>` with only the stubs, bash's own tools and `env` in its environment.
    fn deploy(&self, env: &str, vars: &[(&str, &str)]) -> Output {
        self.run("infra/scripts/stack.sh", &["deploy", env], vars)
    }

    /// `script args` with only the stubs, bash's own tools and `vars` in its environment.
    fn run(&self, script: &str, args: &[&str], vars: &[(&str, &str)]) -> Output {
        let path = format!("{}:/usr/local/bin:/usr/bin:/bin", self.dir.display());
        let mut command = Command::new("bash");
        command
            .arg(Path::new(ROOT).join(script))
            .args(args)
            .env_clear()
            .env("PATH", path)
            .env("HOME", &self.dir)
            .env("STUB_LOG", self.log());
        for (name, value) in vars {
            command.env(name, value);
        }
        command.output().unwrap()
    }
}

impl Drop for Stubs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn a_deploy_takes_the_environment_s_credentials_keeps_the_stage_and_passes_params() {
    let stubs = Stubs::new("keys");
    let output = stubs.deploy(
        "dev",
        &[
            ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_REGION", "eu-west-1"),
            (
                "PARAMS",
                "AlarmEmail=ops@example.com SigningSecretNames=billing",
            ),
        ],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let calls = stubs.calls();
    assert!(
        calls[0].starts_with("aws sts get-caller-identity --region eu-west-1"),
        "the credentials are checked first: {calls:?}"
    );
    let deploy = calls
        .iter()
        .find(|call| call.starts_with("sam deploy"))
        .expect("sam deploy was called");
    assert!(
        deploy.ends_with(
            "--region eu-west-1 --parameter-overrides Stage=dev AlarmEmail=ops@example.com \
             SigningSecretNames=billing"
        ),
        "{deploy}"
    );
    assert!(
        calls.iter().all(|call| !call.contains("--profile")),
        "{calls:?}"
    );
    assert!(
        stdout.contains("AWS account 123456789012, region eu-west-1"),
        "{stdout}"
    );
    assert!(
        stdout.contains("API: https://abc.execute-api.eu-west-1.amazonaws.com/dev"),
        "{stdout}"
    );
}

#[test]
fn prod_keeps_its_own_parameters_and_a_profile_is_passed_on() {
    let stubs = Stubs::new("profile");
    let output = stubs.deploy(
        "prod",
        &[
            ("AWS_PROFILE", "ops"),
            ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE"),
            ("PARAMS", "ApiThrottleRate=200"),
        ],
    );
    assert!(output.status.success(), "{output:?}");
    let deploy = stubs
        .calls()
        .into_iter()
        .find(|call| call.starts_with("sam deploy"))
        .unwrap();
    assert!(
        deploy.ends_with(
            "--profile ops --region us-east-1 --parameter-overrides Stage=prod \
             RequireApiKey=auto LogRetentionDays=90 ApiThrottleRate=200"
        ),
        "{deploy}"
    );
}

#[test]
fn without_credentials_it_stops_before_building_and_says_how_to_give_them() {
    let stubs = Stubs::new("none");
    let output = stubs.deploy("dev", &[]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("No AWS credentials"), "{stderr}");
    assert!(
        stderr.contains("AWS_PROFILE=my-profile make deploy-dev"),
        "{stderr}"
    );
    let calls = stubs.calls();
    assert!(
        calls.iter().all(|call| !call.starts_with("sam")),
        "{calls:?}"
    );
}

#[test]
fn a_redrive_moves_the_dead_letter_queue_to_the_dispatch_queue_and_waits_for_the_move() {
    let stubs = Stubs::new("redrive");
    let output = stubs.run(
        "infra/scripts/redrive.sh",
        &["dev"],
        &[
            ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE"),
            ("AWS_REGION", "eu-west-1"),
        ],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let calls = stubs.calls();
    assert!(
        calls[0].starts_with("aws sts get-caller-identity --region eu-west-1"),
        "the credentials are checked first: {calls:?}"
    );
    let dlq = "arn:aws:sqs:eu-west-1:123456789012:tasksQueue-dev-dlq";
    let start = format!(
        "aws --region eu-west-1 sqs start-message-move-task --source-arn {dlq} \
         --destination-arn arn:aws:sqs:eu-west-1:123456789012:tasksQueue-dev \
         --query TaskHandle --output text"
    );
    assert!(calls.contains(&start), "{calls:?}");
    assert!(
        calls
            .iter()
            .any(|call| call.contains(&format!("sqs list-message-move-tasks --source-arn {dlq}"))),
        "{calls:?}"
    );
    for line in [
        "tasksQueue-dev-dlq: 3 message(s) waiting",
        "move task started: task-handle-1",
        "redrive completed: 3 message(s) back on tasksQueue-dev",
    ] {
        assert!(stdout.contains(line), "{stdout}");
    }
}
