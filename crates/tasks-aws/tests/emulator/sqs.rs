use crate::{emulator, unique};
use aws_sdk_sqs::types::MessageSystemAttributeName;
use aws_sdk_sqs::Client;
use chrono::{TimeZone, Utc};
use std::time::{Duration, Instant};
use tasks_aws::bootstrap::ensure_queue;
use tasks_aws::SqsQueue;
use tasks_core::{DispatchMessage, DispatchQueue, QueueMessage, Slot};

fn task(id: &str) -> DispatchMessage {
    DispatchMessage {
        id: id.to_string(),
        timestamp: Utc.with_ymd_and_hms(2030, 6, 1, 12, 0, 0).unwrap(),
        series: 1,
    }
}

fn message(id: &str) -> QueueMessage {
    QueueMessage::Task(task(id))
}

/// Receives and deletes messages until `count` arrived.
async fn drain(queue: &SqsQueue, count: usize) -> Vec<QueueMessage> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut received = Vec::new();
    while received.len() < count {
        assert!(
            Instant::now() < deadline,
            "{} of {count} messages arrived",
            received.len()
        );
        let messages = queue.receive(10, 1).await.unwrap();
        let handles: Vec<String> = messages.iter().map(|m| m.receipt_handle.clone()).collect();
        queue.delete(&handles).await.unwrap();
        received.extend(messages);
    }
    let mut bodies: Vec<QueueMessage> = received
        .iter()
        .map(|m| serde_json::from_str(&m.body).unwrap())
        .collect();
    bodies.sort_by_key(QueueMessage::key);
    bodies
}

#[tokio::test]
async fn a_batch_arrives_as_one_json_message_per_task() {
    let client = Client::new(&emulator().await);
    let url = ensure_queue(&client, &unique("tasksQueue")).await.unwrap();
    let queue = SqsQueue::new(client, &url);
    let sent = [message("a"), message("b"), message("c")];
    assert_eq!(queue.send_batch(&sent).await.unwrap(), Vec::<String>::new());
    assert_eq!(drain(&queue, 3).await, sent);
    assert!(
        queue.receive(10, 0).await.unwrap().is_empty(),
        "deleted messages came back"
    );
}

#[tokio::test]
async fn the_message_body_is_the_dispatch_contract() {
    let client = Client::new(&emulator().await);
    let url = ensure_queue(&client, &unique("tasksQueue")).await.unwrap();
    let queue = SqsQueue::new(client, &url);
    queue.send_batch(&[message("a")]).await.unwrap();
    let received = queue.receive(1, 1).await.unwrap();
    assert_eq!(
        received[0].body,
        r#"{"id":"a","timestamp":"2030-06-01T12:00:00.000Z","series":1}"#
    );
    let slot = QueueMessage::Slot(Slot {
        name: "slot-1906545600-0-00000000000000ff".into(),
        wake_at: Utc.with_ymd_and_hms(2030, 6, 1, 11, 59, 59).unwrap(),
        tasks: vec![task("a"), task("b")],
        held: false,
    });
    queue.send_batch(std::slice::from_ref(&slot)).await.unwrap();
    let received = queue.receive(1, 1).await.unwrap();
    assert_eq!(
        received[0].body,
        r#"{"slot":"slot-1906545600-0-00000000000000ff","wakeAt":"2030-06-01T11:59:59.000Z","tasks":[{"id":"a","timestamp":"2030-06-01T12:00:00.000Z","series":1},{"id":"b","timestamp":"2030-06-01T12:00:00.000Z","series":1}]}"#
    );
    assert_eq!(
        serde_json::from_str::<QueueMessage>(&received[0].body).unwrap(),
        slot
    );
    // The api's hand-off says it is held (its time has passed here, so it is not delayed).
    let held = QueueMessage::Slot(Slot {
        name: "slot-1906545600-0-0000000000000100".into(),
        wake_at: Utc.with_ymd_and_hms(2020, 6, 1, 11, 59, 59).unwrap(),
        tasks: vec![task("c")],
        held: true,
    });
    queue.send_batch(std::slice::from_ref(&held)).await.unwrap();
    let received = queue.receive(1, 1).await.unwrap();
    assert!(
        received[0].body.ends_with(r#"}],"held":true}"#),
        "{}",
        received[0].body
    );
    assert_eq!(
        serde_json::from_str::<QueueMessage>(&received[0].body).unwrap(),
        held
    );
}

#[tokio::test]
async fn more_than_ten_messages_are_refused_without_a_call() {
    let client = Client::new(&emulator().await);
    let queue = SqsQueue::new(client, "http://127.0.0.1:1/000000000000/nowhere");
    let sent: Vec<QueueMessage> = (0..11).map(|i| message(&format!("t{i}"))).collect();
    let error = queue.send_batch(&sent).await.unwrap_err();
    assert_eq!(error.0, "at most 10 messages per batch, got 11");
}

#[tokio::test]
async fn an_empty_batch_makes_no_call() {
    let client = Client::new(&emulator().await);
    let queue = SqsQueue::new(client, "http://127.0.0.1:1/000000000000/nowhere");
    assert_eq!(queue.send_batch(&[]).await, Ok(vec![]));
}

#[tokio::test]
async fn a_missing_queue_fails_the_whole_batch() {
    let client = Client::new(&emulator().await);
    let url = ensure_queue(&client, &unique("tasksQueue")).await.unwrap();
    let queue = SqsQueue::new(client, url.replace("tasksQueue", "missingQueue"));
    let error = queue.send_batch(&[message("a")]).await.unwrap_err();
    assert!(error.0.contains("NonExistentQueue"), "{error}");
}

#[tokio::test]
async fn a_fifo_queue_groups_and_deduplicates_by_task_series() {
    let client = Client::new(&emulator().await);
    let url = ensure_queue(&client, &format!("{}.fifo", unique("tasksQueue")))
        .await
        .unwrap();
    let queue = SqsQueue::new(client.clone(), &url);
    let first = queue.send_batch(&[message("a"), message("b")]).await;
    assert_eq!(first, Ok(vec![]));
    assert_eq!(queue.send_batch(&[message("a")]).await, Ok(vec![]));

    let deadline = Instant::now() + Duration::from_secs(10);
    let mut received = Vec::new();
    while received.len() < 2 {
        assert!(Instant::now() < deadline, "{received:?}");
        let output = client
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap();
        for m in output.messages.unwrap_or_default() {
            let body: QueueMessage = serde_json::from_str(m.body.as_deref().unwrap()).unwrap();
            let attributes = m.attributes.unwrap();
            assert_eq!(
                attributes[&MessageSystemAttributeName::MessageGroupId],
                body.key()
            );
            assert_eq!(
                attributes[&MessageSystemAttributeName::MessageDeduplicationId],
                body.key()
            );
            queue.delete(&[m.receipt_handle.unwrap()]).await.unwrap();
            received.push(body.task_ids()[0].to_string());
        }
    }
    received.sort();
    assert_eq!(received, ["a", "b"]);
    assert!(
        queue.receive(10, 1).await.unwrap().is_empty(),
        "the duplicate was delivered"
    );
}

#[tokio::test]
async fn deleting_an_unknown_receipt_is_an_error() {
    let client = Client::new(&emulator().await);
    let url = ensure_queue(&client, &unique("tasksQueue")).await.unwrap();
    let queue = SqsQueue::new(client, &url);
    assert_eq!(queue.delete(&[]).await, Ok(()));
    let error = queue.delete(&["bogus".to_string()]).await.unwrap_err();
    assert!(error.0.starts_with("1 of 1 deletes failed"), "{error}");
}
