use crate::{emulator, unique};
use aws_sdk_dynamodb::types::{BillingMode, KeyType, ProjectionType};
use aws_sdk_sqs::types::QueueAttributeName;
use tasks_aws::bootstrap::{ensure_queue, ensure_state_machine, ensure_table};
use tasks_aws::{SHARD_ATTRIBUTE, STATUS_INDEX};

#[tokio::test]
async fn ensure_table_twice_leaves_one_table_with_the_status_index() {
    let client = aws_sdk_dynamodb::Client::new(&emulator().await);
    let name = unique("tasksTable");
    ensure_table(&client, &name).await.unwrap();
    ensure_table(&client, &name).await.unwrap();

    let table = client
        .describe_table()
        .table_name(&name)
        .send()
        .await
        .unwrap()
        .table
        .unwrap();
    let keys = |schema: &[aws_sdk_dynamodb::types::KeySchemaElement]| -> Vec<(String, KeyType)> {
        schema
            .iter()
            .map(|key| (key.attribute_name.clone(), key.key_type.clone()))
            .collect()
    };
    assert_eq!(
        keys(table.key_schema()),
        [("id".to_string(), KeyType::Hash)]
    );
    assert_eq!(
        table
            .billing_mode_summary
            .as_ref()
            .and_then(|b| b.billing_mode.clone()),
        Some(BillingMode::PayPerRequest)
    );
    let [index] = table.global_secondary_indexes() else {
        panic!("one index expected");
    };
    assert_eq!(index.index_name.as_deref(), Some(STATUS_INDEX));
    assert_eq!(
        keys(index.key_schema()),
        [
            (SHARD_ATTRIBUTE.to_string(), KeyType::Hash),
            ("startExecutionAt".to_string(), KeyType::Range)
        ]
    );
    assert_eq!(
        index
            .projection
            .as_ref()
            .and_then(|p| p.projection_type.clone()),
        Some(ProjectionType::All)
    );
}

async fn redrive_policy(client: &aws_sdk_sqs::Client, url: &str) -> serde_json::Value {
    let attributes = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::RedrivePolicy)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    serde_json::from_str(&attributes[&QueueAttributeName::RedrivePolicy]).unwrap()
}

#[tokio::test]
async fn ensure_queue_twice_returns_one_queue_that_redrives_to_its_dead_letter_queue() {
    let client = aws_sdk_sqs::Client::new(&emulator().await);
    let name = unique("tasksQueue");
    let url = ensure_queue(&client, &name).await.unwrap();
    assert_eq!(ensure_queue(&client, &name).await.unwrap(), url);
    assert!(url.ends_with(&name), "{url}");

    let policy = redrive_policy(&client, &url).await;
    let target = policy["deadLetterTargetArn"].as_str().unwrap();
    assert!(target.ends_with(&format!(":{name}-dlq")), "{policy}");
    assert_eq!(policy["maxReceiveCount"].to_string().trim_matches('"'), "3");
}

#[tokio::test]
async fn a_fifo_queue_gets_a_fifo_dead_letter_queue() {
    let client = aws_sdk_sqs::Client::new(&emulator().await);
    let base = unique("tasksQueue");
    let url = ensure_queue(&client, &format!("{base}.fifo"))
        .await
        .unwrap();
    let policy = redrive_policy(&client, &url).await;
    let target = policy["deadLetterTargetArn"].as_str().unwrap();
    assert!(target.ends_with(&format!(":{base}-dlq.fifo")), "{policy}");
}

#[tokio::test]
async fn ensure_state_machine_twice_returns_the_same_machine() {
    let client = aws_sdk_sfn::Client::new(&emulator().await);
    let name = unique("tasks");
    let definition = r#"{"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": true}}}"#;
    let role = "arn:aws:iam::123456789012:role/tasks-local";
    let arn = ensure_state_machine(&client, &name, definition, role)
        .await
        .unwrap();
    assert_eq!(
        ensure_state_machine(&client, &name, definition, role)
            .await
            .unwrap(),
        arn
    );
    assert!(arn.ends_with(&format!(":stateMachine:{name}")), "{arn}");
}
