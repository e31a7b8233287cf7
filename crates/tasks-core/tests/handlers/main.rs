//! The handlers' rules, on the in-memory adapters.

mod commands;
mod dispatch;
mod own_writes;
mod pipeline;
mod reschedule;
mod slot;
mod support;
