//! `tasks-sim`: runs the simulation over many seeds (or one), prints the table, and fails with
//! the seed and the task's trace when an invariant breaks.
//!
//! `tasks-sim [--seeds N] [--first S] [--seed S] [--tasks N] [--hours H] [--threads T] [--no-faults]`

use chrono::Duration;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Instant;
use tasks_sim::{simulate, Faults, Outcome, Scenario};

struct Args {
    seeds: Vec<u64>,
    scenario: Scenario,
    threads: usize,
}

fn parse() -> Result<Args, String> {
    let mut scenario = Scenario::standard();
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
    let mut outcomes = run_all(&args);
    outcomes.sort_by_key(|outcome| outcome.seed);
    let elapsed = started.elapsed();
    print_table(&args, &outcomes, elapsed);
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

fn print_table(args: &Args, outcomes: &[Outcome], elapsed: std::time::Duration) {
    let sum = |f: fn(&Outcome) -> usize| outcomes.iter().map(f).sum::<usize>();
    let mut lateness: Vec<i64> = outcomes
        .iter()
        .flat_map(|outcome| outcome.report.lateness_ms.iter().copied())
        .collect();
    lateness.sort_unstable();
    let percentile = |p: f64| -> String {
        if lateness.is_empty() {
            return "-".into();
        }
        let rank = ((p / 100.0) * lateness.len() as f64).ceil() as usize;
        format!("{} ms", lateness[rank.clamp(1, lateness.len()) - 1])
    };
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
        "simulated {} seed(s) x {} tasks over {} h (+ settling) in {:.1} s",
        outcomes.len(),
        args.scenario.tasks,
        args.scenario.span.num_hours(),
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
    println!("| FAILED (with lastError) | {} |", sum(|o| o.report.failed));
    println!("| CANCELLED | {} |", sum(|o| o.report.cancelled));
    println!("| early | {} |", sum(|o| o.report.early));
    println!("| lost | {} |", sum(|o| o.report.lost));
    println!("| stuck | {} |", sum(|o| o.report.stuck));
    println!(
        "| duplicate deliveries of one attempt | {} |",
        sum(|o| o.report.duplicates)
    );
    println!(
        "| retried deliveries (new attempts) | {} |",
        sum(|o| o.report.redeliveries)
    );
    println!("| dead letters | {} |", sum(|o| o.report.dead_letters));
    println!(
        "| lateness of first delivery p50 / p99 / max | {} / {} / {} |",
        percentile(50.0),
        percentile(99.0),
        percentile(100.0)
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
        "| changes (moved or run now) answered 200 / refused, attempt begun | {} / {} |",
        activity(|o| o.activity.changes),
        activity(|o| o.activity.changes_refused)
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
}
