//! The simulator's own checks: a seed replays exactly, and each way a task could once be lost or
//! stuck has a seed (and a fault profile) that drives the pipeline through it, kept here as a
//! regression case. Each asserts that the path was taken and that every invariant held.

use tasks_core::Pacing;
use tasks_sim::quotas::Rate;
use tasks_sim::{simulate, Faults, Outcome, Scenario, Shape};

/// The findings' seeds were recorded before clients changed and retried tasks and set retry
/// policies, and before the cron looked ahead (its counts draw from the random stream): those
/// stay off so each seed still takes its path; so do the faults added since (their draws).
fn scenario(tasks: usize, faults: Faults) -> Scenario {
    Scenario {
        tasks,
        faults: Faults {
            lambda_answer_lost: 0.0,
            lambda_init_error: 0.0,
            late_wait: 0.0,
            latency_tail: 0.0,
            stop_error: 0.0,
            queue_receive_error: 0.0,
            queue_delete_error: 0.0,
            ..faults
        },
        change_share: 0.0,
        retry_share: 0.0,
        policy_share: 0.0,
        on_failure_every: 0,
        pacing: Pacing {
            start_rate: 0,
            ..Pacing::default()
        },
        ..Scenario::standard()
    }
}

fn clean(outcome: &Outcome) {
    let report = &outcome.report;
    assert!(
        report.violations.is_empty(),
        "seed {}: {:#?}",
        outcome.seed,
        report.violations.first()
    );
    assert_eq!(
        (report.early, report.lost, report.stuck, report.duplicates),
        (0, 0, 0, 0)
    );
}

fn starts(outcome: &Outcome, kind: &str) -> u64 {
    outcome.activity.starts.get(kind).copied().unwrap_or(0)
}

#[test]
fn a_seed_replays_exactly() {
    let first = simulate(7, Scenario::standard());
    let again = simulate(7, Scenario::standard());
    assert_eq!(first.digest, again.digest);
    assert_eq!(first.events, again.events);
    assert_eq!(first.injected, again.injected);
    assert_ne!(first.digest, simulate(8, Scenario::standard()).digest);
    clean(&first);
}

/// Finding 1: Step Functions answers ExecutionAlreadyExists for an ENDED execution too. With the
/// attempt's writes failing often, executions (a slot's, or a task's own) end with their task
/// still waiting; a redelivered message meets the ended name, and the sweeps, asking Step
/// Functions, run the task again in a new series (or end it FAILED with the reason) instead of
/// leaving it waiting with no execution.
#[test]
fn finding_1_an_ended_execution_is_not_taken_for_a_running_one() {
    let faults = Faults {
        store_error: 0.25,
        ..Faults::realistic()
    };
    // Re-seeded (7 before) when lost answers came to be answered by the SDK's retry: the
    // faults' draws changed the random stream.
    let outcome = simulate(24, scenario(150, faults));
    clean(&outcome);
    assert!(
        starts(&outcome, "restarted in a new series") + outcome.activity.recovered > 0,
        "{:?}",
        outcome.activity
    );
}

/// Finding 2: an execution that dies without recording the outcome (its writes keep failing
/// past every retry, Lambda fails after the handler ran) leaves its task IN_PROGRESS; the cron's
/// stuck sweep finds it, asks Step Functions (the task's own execution, or its slot's), and ends
/// it. Slots record their outcomes patiently, so it takes a store failing most writes and many
/// failing webhooks (whose tasks go on in their own executions) to get there.
#[test]
fn finding_2_a_task_whose_execution_died_is_found_and_ended() {
    let faults = Faults {
        lambda_crash_after: 0.1,
        store_error: 0.6,
        webhook_error: 0.5,
        ..Faults::realistic()
    };
    let outcome = simulate(3, scenario(200, faults));
    clean(&outcome);
    assert!(outcome.activity.stuck_found > 0, "{:?}", outcome.activity);
    assert!(
        outcome.activity.recovered + outcome.activity.recovery_failed > 0,
        "{:?}",
        outcome.activity
    );
}

/// Finding 3: items that are not valid tasks sit in the index (one due, one IN_PROGRESS long
/// ago); every cron run skips and counts them, and the due tasks beside them still run.
#[test]
fn finding_3_undecodable_items_are_skipped_not_fatal() {
    let outcome = simulate(5, scenario(100, Faults::none()));
    clean(&outcome);
    assert!(outcome.activity.undecodable_skipped > 0);
    assert_eq!(outcome.report.completed + outcome.report.cancelled, 100);
}

/// Finding 4: a start that keeps failing is given an end: the message reaches the DLQ after its
/// receives, the stale-claim sweep re-sends a bounded number of times, then records FAILED.
#[test]
fn finding_4_a_start_that_keeps_failing_ends_failed() {
    let faults = Faults {
        workflow_error: 0.6,
        ..Faults::none()
    };
    let outcome = simulate(6, scenario(40, faults));
    clean(&outcome);
    assert!(outcome.report.dead_letters > 0);
    assert!(
        outcome.activity.stale_requeued > 0,
        "{:?}",
        outcome.activity
    );
}

/// Finding 5: execute-task's worst case (a slow receiver up to the webhook timeout, store calls
/// before the time) fits its Lambda timeout: it never times out, so a send is never followed by
/// an unknown outcome.
#[test]
fn finding_5_execute_task_finishes_within_its_timeout() {
    let faults = Faults {
        webhook_slow: 0.3,
        ..Faults::realistic()
    };
    let outcome = simulate(13, scenario(100, faults));
    clean(&outcome);
    assert!(outcome.injected.get("webhook.slow").copied().unwrap_or(0) > 0);
    assert_eq!(outcome.injected.get("lambda.timeout"), None);
}

/// Finding 6: a task run now (or created due soon) is claimed by the api's hand-off; a claim
/// DynamoDB refused left it for the next cron run, a minute or more later. Claims are now tried
/// three times within the request: with a store refusing one call in ten, about one such task
/// in a thousand still waits for the cron, not one in ten.
#[test]
fn finding_6_a_task_run_now_rarely_waits_for_the_cron_when_a_claim_fails() {
    let faults = Faults {
        store_error: 0.1,
        ..Faults::none()
    };
    let scenario = Scenario {
        tasks: 300,
        faults,
        change_share: 0.5,
        ..Scenario::standard()
    };
    let outcomes: Vec<Outcome> = (1..=10).map(|seed| simulate(seed, scenario)).collect();
    for outcome in &outcomes {
        clean(outcome);
    }
    let run_now: Vec<i64> = outcomes
        .iter()
        .flat_map(|outcome| outcome.report.run_now_lateness_ms.iter().copied())
        .collect();
    let waited = run_now.iter().filter(|late| **late > 10_000).count();
    assert!(run_now.len() > 200, "{} run now", run_now.len());
    assert!(
        waited * 100 < run_now.len(),
        "{waited} of {} tasks run now waited for the cron",
        run_now.len()
    );
}

/// Changes and retries: clients move tasks earlier and later (inside and beyond the lead time),
/// run them now, and retry FAILED ones, while every fault class is on. No delivery is for a time
/// the task was moved away from, none is early, and no attempt is delivered twice.
#[test]
fn changed_and_retried_tasks_are_delivered_only_at_the_time_set_last() {
    let faults = Faults {
        receiver_gone: 0.1,
        ..Faults::realistic()
    };
    let scenario = Scenario {
        tasks: 300,
        faults,
        change_share: 0.3,
        retry_share: 1.0,
        ..Scenario::standard()
    };
    // A refused change (the attempt had begun) is rare: a few seeds together take every path.
    let outcomes: Vec<Outcome> = (1..=5).map(|seed| simulate(seed, scenario)).collect();
    let total = |count: fn(&Outcome) -> u64| outcomes.iter().map(count).sum::<u64>();
    for outcome in &outcomes {
        clean(outcome);
    }
    let activities: Vec<_> = outcomes.iter().map(|o| &o.activity).collect();
    assert!(total(|o| o.activity.changes) > 250, "{activities:?}");
    assert!(total(|o| o.activity.changes_refused) > 0, "{activities:?}");
    assert!(total(|o| o.activity.retries) > 25, "{activities:?}");
    // A slot finds a task moved to a newer series, and leaves it to its new time.
    let slot_skips = total(|o| o.usage.slot_tasks.get("skipped").copied().unwrap_or(0));
    assert!(slot_skips > 0, "{activities:?}");
}

/// The hotspot at a scale CI runs: 3,000 tasks due in the same second against quotas cut to a
/// thirtieth (StartExecution, `lambda_concurrency` concurrent Lambdas) or, for the state
/// transitions slots save, to a thousandth.
fn small_hotspot(lambda_concurrency: usize) -> Scenario {
    let mut scenario = Scenario {
        tasks: 3_000,
        keep_task_traces: true,
        ..Scenario::hotspot()
    };
    scenario.quotas.start_execution = Rate {
        burst: 40.0,
        per_second: 10.0,
    };
    scenario.quotas.state_transitions = Rate {
        burst: 10.0,
        per_second: 5.0,
    };
    scenario.quotas.lambda_concurrency = lambda_concurrency;
    // 3,000 tasks due in one second are some 20 slots: starting one a second with a two-minute
    // lead time, the cron must claim them ahead of it.
    scenario.pacing.start_rate = 1;
    scenario.pacing.lead_time = chrono::Duration::seconds(120);
    scenario
}

/// A hotspot past the quotas: the cron claims it ahead of the lead time, every quota throttles,
/// and still nothing is early, lost, stuck or delivered twice, and no task ends FAILED because
/// Lambda was throttled.
#[test]
fn a_hotspot_past_the_quotas_is_late_but_never_lost_or_failed_by_throttling() {
    let outcome = simulate(1, small_hotspot(8));
    clean(&outcome);
    let throttled = |quota| outcome.usage.throttled.get(quota).copied().unwrap_or(0);
    assert!(outcome.activity.looked_ahead > 0, "{:?}", outcome.activity);
    assert!(
        throttled("lambda.concurrency") > 0,
        "{:?}",
        outcome.usage.throttled
    );
    assert!(throttled("stepfunctions.state_transitions") > 0);
    assert_eq!(
        outcome
            .report
            .failed_by
            .get("Lambda.TooManyRequestsException"),
        None,
        "{:?}",
        outcome.report.failed_by
    );
    assert_eq!(outcome.report.failed_by.get("StoreUnavailable"), None);
}

/// A create burst past one partition's write rate, at a scale CI runs: 50 `POST /tasks` a
/// second for a minute against index partitions cut to a thirtieth (33 writes a second). Every
/// new task is SCHEDULED; keyed by the status alone, they would all write one partition and the
/// api would answer 503. Spread over the status shards, no create is throttled or refused.
#[test]
fn a_create_burst_past_one_partitions_rate_is_accepted_whole() {
    let mut scenario = Scenario {
        tasks: 3_000,
        shape: Shape::Burst { per_second: 50 },
        keep_task_traces: true,
        ..Scenario::burst()
    };
    let thirtieth = Rate {
        burst: 1_000.0 / 30.0,
        per_second: 1_000.0 / 30.0,
    };
    scenario.quotas.partition_writes = thirtieth;
    let outcome = simulate(1, scenario);
    clean(&outcome);
    assert_eq!(
        outcome.activity.requests_throttled, 0,
        "{:?}",
        outcome.activity
    );
    assert_eq!(outcome.activity.creates_abandoned, 0);
    assert_eq!(
        outcome.usage.throttled.get("dynamodb.write_capacity"),
        None,
        "{:?}",
        outcome.usage.throttled
    );
}

/// The same hotspot with execute-task's concurrency reserved (the template's
/// `ExecuteTaskReservedConcurrency`): execute-task is throttled at its ceiling and never above
/// it, and its slots still run every task, late but never lost or twice. (A hotspot runs as a few
/// hundred slots, so the api keeps most of the account's concurrency without a reservation too.)
#[test]
fn a_hotspot_within_execute_task_s_reservation_runs_whole_at_its_ceiling() {
    let mut scenario = small_hotspot(5);
    scenario.quotas.execute_task_reserved = 2;
    let reserved = simulate(1, scenario);
    clean(&reserved);
    assert!(reserved.usage.throttled.contains_key("lambda.concurrency"));
    assert_eq!(
        reserved.usage.functions[&tasks_sim::usage::Function::ExecuteTask].peak_concurrency,
        2
    );
}

/// Finding 7: a Lambda invocation whose answer Step Functions loses while the handler runs on
/// (`Lambda.SdkClientException`) is retried beside the first run. A slot run twice at once hands
/// a task off without a report from one run while the other still runs its attempts, whose
/// report then meets the task's execution already running: the report is applied (a delivery
/// recorded, a failure's own execution, a retry's time and try count kept on the task), and
/// no request goes out before a reported `retryAt` or past the series' `maxAttempts`.
#[test]
fn finding_7_a_slot_s_report_for_a_running_execution_is_applied_not_dropped() {
    let faults = Faults {
        lambda_answer_lost: 0.3,
        webhook_error: 0.4,
        ..Faults::realistic()
    };
    // Re-seeded (17 before) when callbacks and more faults came: their draws changed the stream.
    let outcome = simulate(
        1,
        Scenario {
            tasks: 150,
            faults,
            ..Scenario::standard()
        },
    );
    clean(&outcome);
    assert!(
        starts(&outcome, "report handed over") > 0,
        "{:?}",
        outcome.activity
    );
}
