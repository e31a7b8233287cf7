//! The Tasks Service domain: the task model, the rules every handler follows, the ports
//! (capability traits) the handlers are written against, and the steps each Lambda runs.
//!
//! The modules are layers. Each imports only the layers before it in this list (checked by
//! `tests/module_layers.rs` in `make lint`):
//!
//! 1. [`config`]: every environment key and its reader.
//! 2. [`model`]: the task, its status table, its retry policy, its time format.
//! 3. [`request`]: what a user asks for: a new task, a patch, the item limits.
//! 4. [`contracts`]: every message between the Lambdas, the queue and the state machine.
//! 5. [`delivery`]: the webhook request, its answer, why an attempt failed.
//! 6. [`ports`]: the store, the queue, the workflow, the sender and the clock as traits, with
//!    the transitions and queries the store takes.
//! 7. [`support`]: trying a call again, sleeping to the millisecond.
//! 8. [`rules`]: pacing, timing relations, look-ahead, slot planning, recovery, error types:
//!    pure functions and tables.
//! 9. [`flow`]: one file per step a Lambda runs, written against the ports.
//! 10. [`metrics`]: what each step's result tells CloudWatch.
//! 11. `testing` (feature `testing`): in-memory adapters of every port.

pub mod config;
pub mod contracts;
pub mod delivery;
pub mod flow;
pub mod metrics;
pub mod model;
pub mod ports;
pub mod request;
pub mod rules;
pub mod support;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use contracts::{DispatchMessage, ExecutionInput, QueueMessage, Slot};
pub use delivery::{DeliveryError, WebhookCall, WebhookResponse};
pub use model::status::{status_shard, Event, TaskStatus, STATUS_SHARDS};
pub use model::task::{AttemptRecord, Changes, NextAttempt, Signing, Task, Webhook};
pub use ports::{
    settle_create, Clock, DispatchQueue, Execution, ExecutionState, Page, QueueError, StartOutcome,
    StatusQuery, StoreError, SystemClock, TaskStore, Transition, WebhookSender, Workflow,
    WorkflowError,
};
pub use request::new_task::{NewTask, ValidationError};
pub use rules::pacing::Pacing;
