//! The service's rules, as pure functions and tables: pacing, the timing relations the template
//! must keep, the look-ahead, slot planning, recovery and the error types the state machine
//! matches.

pub mod error_types;
pub mod look_ahead;
pub mod pacing;
pub mod recovery;
pub mod slot_plan;
pub mod timing;
