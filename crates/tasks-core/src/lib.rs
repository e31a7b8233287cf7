//! The Tasks Service domain: the task model, the rules every handler follows, and the ports
//! (capability traits) the handlers are written against.

mod call_tries;
pub mod error_types;
pub mod item_limits;
pub mod look_ahead;
pub mod new_task;
pub mod pacing;
pub mod ports;
pub mod retry_policy;
pub mod signing;
pub mod slot;
pub mod status;
pub mod task;
pub mod task_patch;
pub mod timing;

pub use new_task::{NewTask, ValidationError};
pub use pacing::Pacing;
pub use ports::{
    settle_create, Changes, Clock, DeliveryError, DispatchQueue, Execution, ExecutionState, Page,
    QueueError, StartOutcome, StatusQuery, StoreError, SystemClock, TaskStore, Transition,
    WebhookCall, WebhookResponse, WebhookSender, Workflow, WorkflowError,
};
pub use slot::{QueueMessage, Slot};
pub use status::{status_shard, Event, TaskStatus, STATUS_SHARDS};
pub use task::{
    AttemptRecord, DispatchMessage, ExecutionInput, NextAttempt, Signing, Task, Webhook,
};

pub mod commands;
pub mod config;
pub mod dispatch;
pub mod memory;
pub mod metrics;
pub mod pipeline;
pub mod recovery;
pub mod reschedule;
pub mod wait;
