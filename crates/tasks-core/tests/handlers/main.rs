//! The handlers' rules, on the in-memory adapters.

mod budgets;
mod commands;
mod dispatch;
mod hand_over;
mod own_writes;
mod pipeline;
mod reschedule;
mod slot;
mod support;
