//! Where an operator finds a task's run on AWS, shown by `GET /tasks/{id}`: the Step Functions
//! executions that may hold it (its own, and its slot's) and a CloudWatch Logs Insights query
//! over the functions' log groups. Local mode has neither and shows nothing.

use serde::Serialize;
use tasks_core::config::{env_optional, FUNCTIONS, LAMBDA_LOG_GROUP_NAME, STATE_MACHINE_ARN};
use tasks_core::{Task, TaskStatus};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Diagnostics {
    state_machine_arn: Option<String>,
    log_groups: Vec<String>,
}

impl Diagnostics {
    /// From the state machine's ARN and the api's own log group (`/aws/lambda/<prefix>api`).
    pub fn new(state_machine_arn: Option<&str>, api_log_group: Option<&str>) -> Self {
        let log_groups = api_log_group
            .and_then(|group| group.strip_suffix("api"))
            .map(|prefix| {
                // Every function's log group is named as the api's, with its own name at the end.
                FUNCTIONS
                    .iter()
                    .map(|f| format!("{prefix}{}", f.function))
                    .collect()
            })
            .unwrap_or_default();
        Diagnostics {
            state_machine_arn: state_machine_arn
                .filter(|arn| arn.contains(":stateMachine:"))
                .map(str::to_string),
            log_groups,
        }
    }

    /// The state machine, and the api's own log group (set by Lambda itself), whose name gives
    /// its siblings'.
    pub fn from_env() -> Self {
        Self::new(
            env_optional(STATE_MACHINE_ARN).as_deref(),
            env_optional(LAMBDA_LOG_GROUP_NAME).as_deref(),
        )
    }

    /// Where to look for `task`; `None` where nothing is known (local mode).
    pub fn of(&self, task: &Task) -> Option<DiagnosticsView> {
        if self.state_machine_arn.is_none() && self.log_groups.is_empty() {
            return None;
        }
        let executions = self
            .state_machine_arn
            .as_deref()
            .map(|machine| {
                let arn = |name: &str| {
                    format!(
                        "{}:{name}",
                        machine.replacen(":stateMachine:", ":execution:", 1)
                    )
                };
                let own = (task.task_status != TaskStatus::Scheduled).then(|| ExecutionRef {
                    of: "task",
                    arn: arn(&task.execution_name()),
                });
                let slot = task.slot.as_deref().map(|slot| ExecutionRef {
                    of: "slot",
                    arn: arn(slot),
                });
                own.into_iter().chain(slot).collect()
            })
            .unwrap_or_default();
        Some(DiagnosticsView {
            executions,
            log_groups: self.log_groups.clone(),
            logs_insights_query: format!(
                "fields @timestamp, @log, @message | filter @message like '{}' \
                 | sort @timestamp asc | limit 1000",
                task.id
            ),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiagnosticsView {
    /// The executions that may hold the task's run: its own (`task`: the current series' name,
    /// once it was handed to the workflow) and its slot's (`slot`: while claimed in one). Either
    /// may not exist (a slot that sent the task itself; a hand-off not started yet).
    pub executions: Vec<ExecutionRef>,
    pub log_groups: Vec<String>,
    /// Every log line that names the task, across `logGroups`.
    pub logs_insights_query: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExecutionRef {
    pub of: &'static str,
    pub arn: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use tasks_core::rules::pacing::Pacing;

    #[test]
    fn a_deployed_api_names_the_executions_and_the_log_groups() {
        let diagnostics = Diagnostics::new(
            Some("arn:aws:states:eu-west-1:123456789012:stateMachine:tasks-dev"),
            Some("/aws/lambda/tasks-dev-api"),
        );
        let mut task = tasks_core::NewTask::parse(br#"{"seconds": 30}"#, Utc::now())
            .unwrap()
            .into_task("t-1".into(), None, Utc::now(), Pacing::default().lead_time);
        task.task_status = TaskStatus::InProgress;
        task.series = 2;
        task.slot = Some("slot-1796695362-3".into());
        let view = diagnostics.of(&task).unwrap();
        let arns: Vec<(&str, &str)> = view
            .executions
            .iter()
            .map(|e| (e.of, e.arn.as_str()))
            .collect();
        assert_eq!(
            arns,
            [
                (
                    "task",
                    "arn:aws:states:eu-west-1:123456789012:execution:tasks-dev:t-1-2"
                ),
                (
                    "slot",
                    "arn:aws:states:eu-west-1:123456789012:execution:tasks-dev:slot-1796695362-3"
                ),
            ]
        );
        assert_eq!(view.log_groups.len(), 5);
        assert_eq!(view.log_groups[3], "/aws/lambda/tasks-dev-execute-task");
        assert!(view.logs_insights_query.contains("like 't-1'"));
    }

    #[test]
    fn local_mode_shows_nothing() {
        let task = tasks_core::NewTask::parse(br#"{"seconds": 30}"#, Utc::now())
            .unwrap()
            .into_task("t-1".into(), None, Utc::now(), Pacing::default().lead_time);
        assert_eq!(Diagnostics::default().of(&task), None);
        let local = Diagnostics::new(Some("local:tasks"), None);
        assert_eq!(local.of(&task), None);
    }
}
