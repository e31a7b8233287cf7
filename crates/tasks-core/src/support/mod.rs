//! Small helpers the steps share: trying a call again, and sleeping to the millisecond.

pub mod call_tries;
pub mod wait;
