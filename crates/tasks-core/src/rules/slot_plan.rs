//! Slot planning: which tasks share a slot execution, when a slot wakes, and how fast a busy
//! second's slots begin their attempts.

use crate::contracts::{DispatchMessage, Slot};
use crate::model::task::Task;
use crate::rules::pacing::Pacing;
use chrono::{DateTime, Duration, Utc};
use std::collections::BTreeMap;
use std::hash::Hasher;

/// The most tasks in one slot: one execute-task run holds this many sends at once.
pub const SLOT_SIZE: usize = 250;

/// How many attempts the slots of one second begin per second, together. Each begin moves the
/// task from a QUEUED shard of the status index to an IN_PROGRESS one, and a task with a webhook
/// takes about two write units: the 16 shards' 1,000 units a second each take some 8,000 begins a
/// second; half of that leaves room for the completions and everything else.
pub const BEGINS_PER_SECOND: i64 = 4_000;

/// The longest a second's slots spend beginning their attempts before the wake-ahead: 120,000
/// tasks due in one second begin in time, a bigger hotspot's last slots begin late.
pub const MAX_PREPARE: Duration = Duration::seconds(30);

/// How long a slot run keeps trying to record a delivered task's outcome, or to begin an attempt
/// whose write failed, before it hands the task off: a hotspot's completions queue behind the
/// index's write rate for as long as a minute.
pub const RECORD_PATIENCE: Duration = Duration::seconds(60);

/// An attempt (a first try after a failed call, or a retry) starts in the slot only this long
/// before the slot's patience ends: time for its reads and writes (5 s each at most), the target's
/// DNS (2 s), its webhook (10 s), its record, and the hand-over's send if the record fails
/// (`timing` checks it).
pub const IN_SLOT_ATTEMPT_MARGIN: Duration = Duration::seconds(40);

/// Puts the tasks a run is about to claim into slots: grouped by the second they are due in, in
/// time order, at most [`SLOT_SIZE`] to a slot. Each slot begins its attempts over its own share
/// of [`BEGINS_PER_SECOND`], so the later slots of a busy second wake earlier than the first
/// (by up to [`MAX_PREPARE`]); the planner remembers how many of each second it has placed, over
/// the pages of one run. A slot's name holds its second and a digest of its tasks and the run's
/// time, so it is never reused.
#[derive(Debug)]
pub struct SlotPlanner {
    pacing: Pacing,
    now: DateTime<Utc>,
    placed: BTreeMap<i64, usize>,
    held: bool,
}

impl SlotPlanner {
    /// A cron run's planner.
    pub fn new(pacing: &Pacing, now: DateTime<Utc>) -> Self {
        SlotPlanner {
            pacing: *pacing,
            now,
            placed: BTreeMap::new(),
            held: false,
        }
    }

    /// The api's planner for the hand-off of a task due soon: its slot is held (`Slot::held`).
    pub fn for_hand_off(pacing: &Pacing, now: DateTime<Utc>) -> Self {
        SlotPlanner {
            held: true,
            ..SlotPlanner::new(pacing, now)
        }
    }

    /// The slots for `tasks`, each with the tasks it is to hold.
    pub fn plan(&mut self, tasks: Vec<Task>) -> Vec<(Slot, Vec<Task>)> {
        let mut seconds: BTreeMap<i64, Vec<Task>> = BTreeMap::new();
        for task in tasks {
            seconds
                .entry(task.timestamp.timestamp())
                .or_default()
                .push(task);
        }
        let mut slots = Vec::new();
        for (second, mut tasks) in seconds {
            in_time_order(&mut tasks);
            for chunk in tasks.chunks(SLOT_SIZE) {
                let placed = self.placed.entry(second).or_default();
                let index = placed.div_ceil(SLOT_SIZE);
                *placed += chunk.len();
                let ahead = begin_time(*placed).min(MAX_PREPARE);
                let digest = digest_of(
                    Some(self.now.timestamp_nanos_opt().unwrap_or_default()),
                    chunk.iter().map(|task| (task.id.as_str(), task.series)),
                );
                let slot = Slot {
                    name: format!("slot-{second}-{index}-{digest:016x}"),
                    wake_at: self.pacing.wake_at(chunk[0].timestamp) - ahead,
                    tasks: Vec::new(),
                    held: self.held,
                };
                slots.push((slot, chunk.to_vec()));
            }
        }
        slots
    }
}

/// A task as a slot holds it: due at a time, named by its id.
pub(crate) trait Due {
    fn due(&self) -> (DateTime<Utc>, &str);
}

impl Due for Task {
    fn due(&self) -> (DateTime<Utc>, &str) {
        (self.timestamp, &self.id)
    }
}

impl Due for DispatchMessage {
    fn due(&self) -> (DateTime<Utc>, &str) {
        (self.timestamp, &self.id)
    }
}

/// The order of a slot's tasks: by time, then id.
pub(crate) fn in_time_order<T: Due>(tasks: &mut [T]) {
    tasks.sort_by(|a, b| a.due().cmp(&b.due()));
}

/// The digest in a slot's name: its tasks (id and series), after the planning run's clock when
/// there is one, so that concurrent runs name their slots apart.
pub(crate) fn digest_of<'a>(run: Option<i64>, tasks: impl Iterator<Item = (&'a str, u32)>) -> u64 {
    let mut digest = fnv::FnvHasher::default();
    if let Some(nanos) = run {
        digest.write_i64(nanos);
    }
    for (id, series) in tasks {
        digest.write(id.as_bytes());
        digest.write_u32(series);
    }
    digest.finish()
}

/// How long `tasks` attempts take to begin at [`BEGINS_PER_SECOND`].
pub(crate) fn begin_time(tasks: usize) -> Duration {
    Duration::milliseconds(tasks as i64 * 1_000 / BEGINS_PER_SECOND)
}
