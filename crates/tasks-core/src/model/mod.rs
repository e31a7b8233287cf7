//! The task as it is stored, its status table, its retry policy and its time format.

pub mod retry_policy;
pub mod status;
pub mod task;
pub mod time;
