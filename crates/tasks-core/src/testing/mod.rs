//! In-memory adapters of every port, for tests (the `testing` feature).

pub mod memory;
