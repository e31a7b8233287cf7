//! `tasks-sim`: runs the simulation over many seeds (or one), prints the table, and fails with
//! the seed and the task's trace when an invariant breaks.
//!
//! `tasks-sim [--seeds N] [--first S] [--seed S] [--tasks N] [--hours H] [--threads T] [--no-faults]
//! [--workload steady|hotspot|burst] [--scale] [--start-rate R] [--lambda-concurrency C]
//! [--execute-task-reserved R]`
//!
//! `--workload` starts from one of the scale workloads instead of the standard scenario; `--scale`
//! runs the three (one seed each, side by side on the threads, each with the flags below) and
//! prints a table for each;
//! `--start-rate` sets the rate look-ahead dispatch plans with (0 turns it off);
//! `--lambda-concurrency` raises (or lowers) the account's Lambda concurrency;
//! `--execute-task-reserved` reserves that much of it for execute-task, as the template's
//! `ExecuteTaskReservedConcurrency` does. Flags given before
//! `--workload` are kept.

use chrono::Duration;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Instant;
use tasks_sim::cost;
use tasks_sim::usage::Function;
use tasks_sim::{simulate, Faults, Outcome, Scenario};

struct Args {
    seeds: Vec<u64>,
    scenario: Scenario,
    threads: usize,
    scale: bool,
}

/// A scale workload: its name and its scenario.
type Workload = (&'static str, fn() -> Scenario);

/// The scale workloads by name.
const WORKLOADS: [Workload; 3] = [
    ("steady", Scenario::steady),
    ("hotspot", Scenario::hotspot),
    ("burst", Scenario::burst),
];

fn parse() -> Result<Args, String> {
    let mut scenario = Scenario::standard();
    let mut scale = false;
    let (mut count, mut first, mut one, mut threads) = (200u64, 1u64, None, 2usize);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = |name: &str| -> Result<u64, String> {
            args.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{name} takes a whole number"))
        };
        match flag.as_str() {
            "--seeds" => count = value("--seeds")?,
            "--first" => first = value("--first")?,
            "--seed" => one = Some(value("--seed")?),
            "--tasks" => scenario.tasks = value("--tasks")? as usize,
            "--hours" => scenario.span = Duration::hours(value("--hours")? as i64),
            "--threads" => threads = value("--threads")?.max(1) as usize,
            "--no-faults" => scenario.faults = Faults::none(),
            "--workload" => {
                let name = args.next().unwrap_or_default();
                let (_, workload) = WORKLOADS
                    .iter()
                    .find(|(known, _)| *known == name)
                    .ok_or_else(|| {
                        format!("--workload takes steady, hotspot or burst, not {name}")
                    })?;
                scenario = Scenario {
                    faults: scenario.faults,
                    pacing: scenario.pacing,
                    quotas: scenario.quotas,
                    ..workload()
                };
            }
            "--scale" => scale = true,
            "--start-rate" => scenario.pacing.start_rate = value("--start-rate")? as u32,
            "--lambda-concurrency" => {
                scenario.quotas.lambda_concurrency = value("--lambda-concurrency")? as usize
            }
            "--execute-task-reserved" => {
                scenario.quotas.execute_task_reserved = value("--execute-task-reserved")? as usize
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    // A large run keeps no per-task traces (a failing seed is replayed small to see one).
    scenario.keep_task_traces = scenario.tasks <= 20_000;
    let seeds = match one {
        Some(seed) => vec![seed],
        None => (first..first + count).collect(),
    };
    Ok(Args {
        seeds,
        scenario,
        threads,
        scale,
    })
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(args) => args,
        Err(error) => {
            eprintln!("tasks-sim: {error}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let outcomes = if args.scale {
        run_scale(&args)
    } else {
        let mut outcomes = run_all(&args);
        outcomes.sort_by_key(|outcome| outcome.seed);
        print_table(&args.scenario, &outcomes, started.elapsed());
        outcomes
    };
    let failing: Vec<&Outcome> = outcomes
        .iter()
        .filter(|outcome| !outcome.report.violations.is_empty())
        .collect();
    for outcome in &failing {
        for violation in outcome.report.violations.iter().take(3) {
            println!(
                "\nVIOLATION seed {} task {}: {}\n  replay: make sim SEED={}",
                outcome.seed, violation.task_id, violation.what, outcome.seed
            );
            for line in &violation.trace {
                println!("    {line}");
            }
        }
    }
    if failing.is_empty() {
        ExitCode::SUCCESS
    } else {
        println!(
            "\n{} of {} seeds broke an invariant",
            failing.len(),
            outcomes.len()
        );
        ExitCode::FAILURE
    }
}

/// The three scale workloads, side by side on the threads, each with the first seed; a table
/// for each as it ends, in the order they were named.
fn run_scale(args: &Args) -> Vec<Outcome> {
    let seed = args.seeds.first().copied().unwrap_or(1);
    let scenarios: Vec<(&str, Scenario)> = WORKLOADS
        .iter()
        .map(|(name, workload)| {
            let scenario = Scenario {
                faults: args.scenario.faults,
                pacing: args.scenario.pacing,
                quotas: args.scenario.quotas,
                ..workload()
            };
            (*name, scenario)
        })
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..args.threads.min(scenarios.len()) {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some((name, scenario)) = scenarios.get(index) else {
                    return;
                };
                let started = Instant::now();
                let outcome = simulate(seed, *scenario);
                done.lock()
                    .unwrap()
                    .push((index, *name, *scenario, outcome, started.elapsed()));
            });
        }
    });
    let mut done = done.into_inner().unwrap();
    done.sort_by_key(|(index, ..)| *index);
    let outcomes: Vec<Outcome> = done
        .into_iter()
        .map(|(_, name, scenario, outcome, elapsed)| {
            println!("\n## workload: {name}\n");
            print_table(&scenario, std::slice::from_ref(&outcome), elapsed);
            outcome
        })
        .collect();
    print_month(seed, &outcomes[0]);
    outcomes
}

/// The month's bill at 1,000, a million and 30 million tasks a month: the steady day's cost per
/// task, the logs the real binaries write (measured), the cron's month with nothing due
/// (simulated: an hour without tasks), storage at the retention, and the stack's fixed items.
fn print_month(seed: u64, steady: &Outcome) {
    let idle = simulate(
        seed,
        Scenario {
            tasks: 0,
            ..Scenario::standard()
        },
    );
    let (idle_month, cron_runs) = cost::idle_month(&idle.usage);
    let tasks = steady.report.tasks as u64;
    let per_million = cost::bill(&steady.usage, tasks)
        .last()
        .map_or(0.0, |total| total.per_million_tasks);
    let footprint = cost::MEASURED;
    let log_bytes = footprint.log_bytes_per_task(&steady.usage, tasks);
    let deployment = cost::Deployment::template_defaults();
    let months: Vec<Vec<cost::Charge>> = [1e3, 1e6, 3e7]
        .iter()
        .map(|&n| {
            cost::monthly(
                n,
                per_million,
                idle_month,
                log_bytes,
                &deployment,
                &footprint,
            )
        })
        .collect();
    println!("\n## the month's bill (us-east-1, on-demand, no free tier)\n");
    println!("| item | 1,000 tasks | 1,000,000 tasks | 30,000,000 tasks | at a million: what is counted |");
    println!("|---|---|---|---|---|");
    for (row, charge) in months[1].iter().enumerate() {
        println!(
            "| {} | ${:.2} | ${:.2} | ${:.2} | {} |",
            charge.item,
            months[0][row].dollars,
            charge.dollars,
            months[2][row].dollars,
            charge.measure
        );
    }
    println!(
        "\nlog bytes per task {log_bytes:.0} (measured per invocation, times the steady day's \
         invocations per task); the cron with nothing due: {cron_runs} runs simulated, \
         ${idle_month:.2} a month"
    );
}

/// Seeds run on `threads` threads, each seed on its own single-threaded runtime.
fn run_all(args: &Args) -> Vec<Outcome> {
    let chunks: Vec<Vec<u64>> = (0..args.threads)
        .map(|t| {
            args.seeds
                .iter()
                .copied()
                .skip(t)
                .step_by(args.threads)
                .collect()
        })
        .collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|seeds| {
                let scenario = args.scenario;
                scope.spawn(move || {
                    seeds
                        .into_iter()
                        .map(|seed| simulate(seed, scenario))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| handle.join().expect("a simulation thread"))
            .collect()
    })
}

/// Every outcome's values of one measure, sorted.
fn sorted(outcomes: &[Outcome], values: fn(&Outcome) -> &Vec<i64>) -> Vec<i64> {
    let mut all: Vec<i64> = outcomes.iter().flat_map(values).copied().collect();
    all.sort_unstable();
    all
}

/// "p50 / p99 / max" of sorted milliseconds (nearest rank).
fn spread(sorted: &[i64]) -> String {
    if sorted.is_empty() {
        return "- / - / -".into();
    }
    let percentile = |p: f64| {
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    };
    format!(
        "{} ms / {} ms / {} ms",
        percentile(50.0),
        percentile(99.0),
        percentile(100.0)
    )
}

fn print_table(scenario: &Scenario, outcomes: &[Outcome], elapsed: std::time::Duration) {
    let sum = |f: fn(&Outcome) -> usize| outcomes.iter().map(f).sum::<usize>();
    let mut injected: BTreeMap<&str, u64> = BTreeMap::new();
    let mut starts: BTreeMap<&str, u64> = BTreeMap::new();
    for outcome in outcomes {
        for (class, count) in &outcome.injected {
            *injected.entry(class).or_default() += count;
        }
        for (kind, count) in &outcome.activity.starts {
            *starts.entry(kind).or_default() += count;
        }
    }
    let activity = |f: fn(&Outcome) -> u64| outcomes.iter().map(f).sum::<u64>();
    if let [one] = outcomes {
        println!(
            "seed {}: trace digest {} ({} events)",
            one.seed, one.digest, one.events
        );
    }
    println!(
        "simulated {} seed(s) x {} tasks over {} min (+ settling) in {:.1} s",
        outcomes.len(),
        scenario.tasks,
        scenario.span.num_minutes(),
        elapsed.as_secs_f64()
    );
    println!("| measure | value |\n|---|---|");
    println!("| seeds | {} |", outcomes.len());
    println!("| tasks | {} |", sum(|o| o.report.tasks));
    println!(
        "| delivered (tasks with a webhook request) | {} |",
        sum(|o| o.report.delivered)
    );
    println!("| COMPLETED | {} |", sum(|o| o.report.completed));
    let mut failed_by: BTreeMap<&str, usize> = BTreeMap::new();
    for outcome in outcomes {
        for (reason, n) in &outcome.report.failed_by {
            *failed_by.entry(reason).or_default() += n;
        }
    }
    let failed_by: Vec<String> = failed_by
        .iter()
        .map(|(reason, n)| format!("{reason} {n}"))
        .collect();
    println!(
        "| FAILED (with lastError) | {} ({}) |",
        sum(|o| o.report.failed),
        failed_by.join(", ")
    );
    println!("| CANCELLED | {} |", sum(|o| o.report.cancelled));
    println!("| early | {} |", sum(|o| o.report.early));
    println!("| lost | {} |", sum(|o| o.report.lost));
    println!("| stuck | {} |", sum(|o| o.report.stuck));
    println!(
        "| duplicate deliveries of one attempt | {} |",
        sum(|o| o.report.duplicates)
    );
    println!(
        "| requests answered 409 after their own write was applied | {} |",
        sum(|o| o.report.refused_after_own_write)
    );
    println!(
        "| FAILED for the execution, last attempt never sent | {} |",
        sum(|o| o.report.failed_unsent)
    );
    println!(
        "| FAILED for an execution's error with no attempt begun | {} |",
        sum(|o| o.report.failed_without_attempt)
    );
    println!(
        "| requests sent before a reported retryAt | {} |",
        sum(|o| o.report.sent_before_retry)
    );
    println!(
        "| failure callbacks (without a FAILED record of their series, or repeated) | {} ({}) |",
        sum(|o| o.report.callbacks),
        sum(|o| o.report.unmatched_callbacks)
    );
    println!(
        "| retried deliveries (new attempts) | {} |",
        sum(|o| o.report.redeliveries)
    );
    println!("| dead letters | {} |", sum(|o| o.report.dead_letters));
    let ahead = sorted(outcomes, |o| &o.report.lateness_ms);
    let run_now = sorted(outcomes, |o| &o.report.run_now_lateness_ms);
    let mut all = [ahead.as_slice(), run_now.as_slice()].concat();
    all.sort_unstable();
    println!(
        "| lateness of first delivery p50 / p99 / max | {} |",
        spread(&all)
    );
    println!(
        "| ... of the {} tasks whose time was set ahead | {} |",
        ahead.len(),
        spread(&ahead)
    );
    println!(
        "| ... of the {} asked to run now (from the request) | {} |",
        run_now.len(),
        spread(&run_now)
    );
    println!(
        "| longest time to a final status | {} s |",
        outcomes
            .iter()
            .map(|o| o.report.max_settle_ms)
            .max()
            .unwrap_or(0)
            / 1000
    );
    println!(
        "| cron runs (failed) | {} ({}) |",
        activity(|o| o.activity.cron_runs),
        activity(|o| o.activity.cron_failures)
    );
    println!(
        "| recovered by the sweeps / recorded FAILED by them | {} / {} |",
        activity(|o| o.activity.recovered),
        activity(|o| o.activity.recovery_failed)
    );
    println!(
        "| undecodable items skipped | {} |",
        activity(|o| o.activity.undecodable_skipped)
    );
    println!(
        "| creates retried by clients / cancels | {} / {} |",
        activity(|o| o.activity.creates_retried),
        activity(|o| o.activity.cancels)
    );
    println!(
        "| client requests answered 429/503 by a quota | {} |",
        activity(|o| o.activity.requests_throttled)
    );
    println!(
        "| creates never accepted: client gave up (of which: time passed) | {} ({}) |",
        activity(|o| o.activity.creates_abandoned),
        activity(|o| o.activity.creates_too_late)
    );
    println!(
        "| changes (moved or run now) answered 200 / refused, attempt begun | {} / {} |",
        activity(|o| o.activity.changes),
        activity(|o| o.activity.changes_refused)
    );
    println!(
        "| edits (webhook, payload or retry policy) answered 200 / refused | {} / {} |",
        activity(|o| o.activity.edits),
        activity(|o| o.activity.edits_refused)
    );
    println!(
        "| FAILED tasks retried by clients | {} |",
        activity(|o| o.activity.retries)
    );
    let starts: Vec<String> = starts
        .iter()
        .map(|(kind, n)| format!("{kind} {n}"))
        .collect();
    println!("| starts by result | {} |", starts.join(", "));
    let faults: Vec<String> = injected
        .iter()
        .map(|(class, n)| format!("{class} {n}"))
        .collect();
    println!("| faults injected | {} |", faults.join(", "));
    print_usage(outcomes);
}

/// Throttling by quota, Lambda concurrency, calls per task by API and the cost per million
/// tasks, over all the outcomes together.
fn print_usage(outcomes: &[Outcome]) {
    let mut usage = tasks_sim::usage::Usage::default();
    for outcome in outcomes {
        usage.add(&outcome.usage);
    }
    let tasks = outcomes
        .iter()
        .map(|o| o.report.tasks)
        .sum::<usize>()
        .max(1) as f64;
    let slot_tasks: Vec<String> = usage
        .slot_tasks
        .iter()
        .map(|(outcome, n)| format!("{outcome} {n}"))
        .collect();
    println!(
        "| tasks in slot runs, by what the run did | {} |",
        slot_tasks.join(", ")
    );
    let throttled: Vec<String> = usage
        .throttled
        .iter()
        .map(|(quota, n)| format!("{quota} {n}"))
        .collect();
    println!(
        "| throttled by quota | {} |",
        if throttled.is_empty() {
            "none".to_string()
        } else {
            throttled.join(", ")
        }
    );
    let peaks: Vec<String> = Function::ALL
        .iter()
        .filter_map(|f| {
            let used = usage.functions.get(f)?;
            Some(format!("{} {}", f.name(), used.peak_concurrency))
        })
        .collect();
    println!(
        "| Lambda concurrency peak (account; by function) | {}; {} |",
        usage.peak_concurrency,
        peaks.join(", ")
    );
    let calls: Vec<String> = usage
        .calls
        .iter()
        .map(|(api, n)| format!("{api} {:.2}", *n as f64 / tasks))
        .collect();
    println!("| AWS requests per task by API | {} |", calls.join(", "));
    for line in cost::bill(&usage, tasks as u64) {
        println!(
            "| cost per million tasks: {} | ${:.2}{} |",
            line.service,
            line.per_million_tasks,
            if line.measure.is_empty() {
                String::new()
            } else {
                format!(" ({} per task)", line.measure)
            }
        );
    }
}
