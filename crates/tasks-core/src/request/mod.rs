//! What a user asks for: a new task, a change to one, and the limits a stored item must keep.

pub mod item_limits;
pub mod new_task;
pub mod signing;
pub mod task_patch;
