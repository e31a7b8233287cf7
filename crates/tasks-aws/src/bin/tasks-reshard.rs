//! `TABLE_NAME=tasksTable-<stage> cargo run -p tasks-aws --bin tasks-reshard`: gives every task in
//! the table its status index key. Run it once after upgrading a table created before the index
//! was sharded (docs/deploy.md); it is safe to run again, and while the service runs.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let store = match tasks_aws::store_from_env(&tasks_aws::load_config().await) {
        Ok(store) => store,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    };
    let table = store.table_name();
    match store.reshard().await {
        Ok(report) => {
            println!(
                "{table}: {} items scanned, {} given their key, {} written meanwhile (already keyed)",
                report.scanned, report.rewritten, report.changed_meanwhile
            );
            if !report.not_tasks.is_empty() {
                println!(
                    "{} items have no task status and were left as they are: {}",
                    report.not_tasks.len(),
                    report.not_tasks.join(", ")
                );
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{table}: {error}");
            ExitCode::FAILURE
        }
    }
}
