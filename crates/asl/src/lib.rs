//! Runs an Amazon States Language state machine with AWS Step Functions' semantics, for the
//! subset the service's workflow uses: Pass, Wait, Task (Retry, Catch, TimeoutSeconds), Choice,
//! Succeed and Fail, with InputPath / Parameters / ResultSelector / ResultPath / OutputPath and
//! the execution's TimeoutSeconds. A definition using anything else is refused at parse time.
//!
//! The interpreter reads no clock, starts no timer and draws no random number of its own:
//! time, randomness and task invocation belong to the [`Host`], so one definition runs the same
//! way in a local process (real time) and in a simulation (virtual time, seeded randomness). It
//! iterates over nothing unordered, so a deterministic host gives a deterministic execution.
//!
//! ```
//! # async fn run(host: &dyn asl::Host) {
//! let machine = asl::StateMachine::parse(r#"{
//!     "StartAt": "Hello",
//!     "States": {"Hello": {"Type": "Pass", "Result": "world", "ResultPath": "$.hello", "End": true}}
//! }"#).unwrap();
//! let context = asl::Context { execution_name: "run-1".into(), start_time: host.now() };
//! let outcome = asl::execute(&machine, host, serde_json::json!({}), context).await;
//! assert_eq!(outcome, asl::ExecutionOutcome::Succeeded(serde_json::json!({"hello": "world"})));
//! # }
//! ```

mod choice;
mod definition;
mod execution;
mod path;
mod registry;
mod template;
mod timestamp;

pub use definition::{DefinitionError, StateMachine};
pub use execution::{execute, Context, ExecutionOutcome, Failure, HistoryEvent, Host};
pub use registry::{ExecutionState, Executions, FinalStatus, Start};
