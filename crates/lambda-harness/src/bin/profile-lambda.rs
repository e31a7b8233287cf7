//! `make profile-lambda`: instructions per request, counted by valgrind's callgrind (counts
//! repeat on a busy machine, CPU times do not), for the api's POST and the cron's dispatch. Each
//! function runs as a Lambda process on moto as in `make bench-lambda`; counting restarts after
//! a warm-up, so each profile holds the measured requests only. Writes
//! `<output>/<case>.callgrind` for `callgrind_annotate` and prints the instructions per request.
//!
//! Usage: profile-lambda <directory with the binaries> <output directory> [requests, default 50]

use chrono::Duration as Span;
use lambda_harness::bench::{drain, invoke_ok, seed};
use lambda_harness::{events, Function, Process};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tasks_aws::testing::Resources;
use tasks_core::TaskStatus;
use tokio::sync::Notify;

const WARM_UP: usize = 10;
const CRON_DUE_TASKS: usize = 200;

/// The first program called `name` on PATH.
fn on_path(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!("{name} is not on PATH: install valgrind (apt-get install valgrind)")
        })
}

/// A function process under callgrind, its counts going to `<output>/<case>.callgrind.<n>`.
struct Profiled {
    function: Function,
    process: Process,
    profile: PathBuf,
    dumps: usize,
}

impl Profiled {
    /// `binary` under callgrind: a launcher script takes its place, since the function's
    /// environment is cleared before it starts.
    async fn start(
        case: &str,
        binary: &Path,
        output: &Path,
        configure: impl FnOnce(Function) -> Function,
    ) -> Self {
        let profile = output.join(format!("{case}.callgrind"));
        let launcher = output.join(format!("{case}.sh"));
        std::fs::write(
            &launcher,
            format!(
                "#!/bin/sh\nexec {} --tool=callgrind --callgrind-out-file={} {}\n",
                on_path("valgrind").display(),
                profile.display(),
                binary.display()
            ),
        )
        .expect("write the launcher");
        let mut permissions = std::fs::metadata(&launcher)
            .expect("the launcher")
            .permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
        std::fs::set_permissions(&launcher, permissions).expect("make the launcher executable");
        let function = configure(Function::on_emulator(case, &launcher).await);
        let process = function.spawn();
        Profiled {
            function,
            process,
            profile,
            dumps: 0,
        }
    }

    /// Writes the counts since the last dump (or the start) and zeroes them: the dump's
    /// instruction total.
    async fn dump(&mut self) -> u64 {
        let status = tokio::process::Command::new(on_path("callgrind_control"))
            .arg("--dump")
            .arg(self.process.pid().to_string())
            .stdout(std::process::Stdio::null())
            .status()
            .await
            .expect("run callgrind_control");
        assert!(status.success(), "callgrind_control failed: {status}");
        self.dumps += 1;
        let file = PathBuf::from(format!("{}.{}", self.profile.display(), self.dumps));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(total) = std::fs::read_to_string(&file)
                .ok()
                .and_then(|text| instruction_total(&text))
            {
                return total;
            }
            assert!(
                Instant::now() < deadline,
                "no profile at {}",
                file.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs `requests` through the warm function and keeps their profile as `<case>.callgrind`.
    async fn measure(&mut self, events: impl IntoIterator<Item = serde_json::Value>) -> u64 {
        self.dump().await;
        for event in events {
            invoke_ok(&self.function, &self.process, event).await;
        }
        let total = self.dump().await;
        let measured = PathBuf::from(format!("{}.{}", self.profile.display(), self.dumps));
        std::fs::rename(&measured, &self.profile).expect("keep the measured profile");
        total
    }

    async fn stop(self) {
        self.process.stop().await;
        for dump in 1..self.dumps {
            let _ = std::fs::remove_file(format!("{}.{dump}", self.profile.display()));
        }
    }
}

/// The `summary:` (or `totals:`) line of a complete callgrind dump.
fn instruction_total(profile: &str) -> Option<u64> {
    profile.lines().find_map(|line| {
        line.strip_prefix("summary:")
            .or_else(|| line.strip_prefix("totals:"))
            .and_then(|count| count.trim().parse().ok())
    })
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: profile-lambda <binaries dir> <output dir> [requests]";
    let dir = PathBuf::from(args.next().expect(usage));
    let output = PathBuf::from(args.next().expect(usage));
    let requests: usize = args.next().map_or(50, |n| n.parse().expect("a number"));
    std::fs::create_dir_all(&output).expect("create the output directory");

    let resources = Arc::new(Resources::create().await);
    let stop = Arc::new(Notify::new());
    let drainer = drain(resources.clone(), stop.clone());
    let configure = |function: Function| {
        function
            .env("TABLE_NAME", &resources.table_name)
            .env("QUEUE_URL", &resources.queue_url)
            .env(
                "STATE_MACHINE_ARN",
                resources.workflow().state_machine_arn().to_string(),
            )
            .env("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH", "true")
    };
    let mut rows = Vec::new();

    for (case, body, what) in [
        (
            "api-post",
            json!({"hours": 1}),
            "api: POST /tasks {\"hours\": 1} (PutItem)",
        ),
        (
            "api-handoff",
            json!({"seconds": 30}),
            "api: POST /tasks {\"seconds\": 30} (PutItem, claim, SendMessage)",
        ),
    ] {
        let mut api = Profiled::start(case, &dir.join("api"), &output, configure).await;
        let post = || events::api_post_tasks(&body);
        for _ in 0..WARM_UP {
            invoke_ok(&api.function, &api.process, post()).await;
        }
        let total = api.measure((0..requests).map(|_| post())).await;
        rows.push((what, total / requests as u64, case));
        api.stop().await;
    }

    let mut cron = Profiled::start("cron-dispatch", &dir.join("cron"), &output, configure).await;
    for _ in 0..WARM_UP {
        invoke_ok(&cron.function, &cron.process, events::scheduled()).await;
    }
    seed(
        &resources,
        CRON_DUE_TASKS,
        TaskStatus::Scheduled,
        Span::seconds(30),
    )
    .await;
    let total = cron.measure([events::scheduled()]).await;
    assert!(
        cron.process
            .log()
            .contains(&format!("dispatched={CRON_DUE_TASKS}")),
        "the cron's run did not dispatch the {CRON_DUE_TASKS} due tasks:\n{}",
        cron.process.log()
    );
    rows.push((
        "cron: one run dispatching its due tasks, per task",
        total / CRON_DUE_TASKS as u64,
        "cron-dispatch",
    ));
    cron.stop().await;
    stop.notify_one();
    drainer.await.expect("the queue drainer");

    println!("| case | instructions per request | profile |");
    println!("|---|---|---|");
    for (what, per_request, case) in rows {
        println!(
            "| {what} | {per_request} | {} |",
            output.join(format!("{case}.callgrind")).display()
        );
    }
    println!("\n({requests} requests per api case, {CRON_DUE_TASKS} due tasks in the cron's run, after {WARM_UP} warm-up invocations.)");
}
