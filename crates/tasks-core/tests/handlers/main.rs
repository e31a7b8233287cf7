//! The handlers' rules, on the in-memory adapters.

mod commands;
mod dispatch;
mod pipeline;
mod reschedule;
mod slot;
mod support;
