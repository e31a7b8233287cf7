//! The web console in a real browser: headless Chromium, driven over WebDriver by chromedriver,
//! against the whole service in this process (`tasks-local` with its own emulator).
//! `make browser` installs Debian's `chromium` and `chromium-driver`; without them this test fails,
//! unless `TASKS_SKIP_BROWSER_TEST` is set (by `make test` on a machine without apt-get, which
//! says so loudly) and `CI` is not.

mod webdriver;

use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tasks_local::{start, Settings};
use webdriver::{which, Driver};

const SCREENSHOT: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/console.png");

/// `CHROMIUM` and `CHROMEDRIVER` name the binaries; otherwise they are looked up on PATH.
fn browser() -> (PathBuf, PathBuf) {
    let named = |variable: &str| std::env::var_os(variable).map(PathBuf::from);
    let chromium = named("CHROMIUM").or_else(|| which("chromium"));
    let chromedriver = named("CHROMEDRIVER").or_else(|| which("chromedriver"));
    match (chromium, chromedriver) {
        (Some(chromium), Some(chromedriver)) => (chromium, chromedriver),
        (chromium, chromedriver) => panic!(
            "the console test needs Chromium and chromedriver (found chromium: {chromium:?}, \
             chromedriver: {chromedriver:?}): `make browser` installs Debian's chromium and \
             chromium-driver, or set CHROMIUM and CHROMEDRIVER"
        ),
    }
}

async fn post(http: &reqwest::Client, base: &str, body: Value) -> Value {
    let response = http
        .post(format!("{base}/tasks"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

async fn get(http: &reqwest::Client, base: &str, id: &str) -> Value {
    http.get(format!("{base}/tasks/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_console_creates_lists_opens_and_cancels_a_task() {
    if std::env::var_os("TASKS_SKIP_BROWSER_TEST").is_some() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI requires the console browser test: TASKS_SKIP_BROWSER_TEST must not be set"
        );
        return;
    }
    let (chromium, chromedriver) = browser();
    let settings = Settings::isolated_from_env().expect("settings");
    let service = start(settings).await.expect("the local service starts");
    let base = format!("http://{}", service.addr);
    let http = reqwest::Client::new();

    // Tasks due now complete within seconds, so that the lateness histogram has data; a few
    // later ones fill the list.
    let mut due = Vec::new();
    for i in 0..12 {
        due.push(post(&http, &base, json!({"seconds": 1 + i % 3})).await["id"].clone());
    }
    for minutes in [20, 30] {
        post(
            &http,
            &base,
            json!({"minutes": minutes, "webhook": {"url": "https://example.com/hooks/later"}}),
        )
        .await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for id in &due {
        loop {
            let task = get(&http, &base, id.as_str().unwrap()).await;
            if task["status"] == "COMPLETED" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "a due task did not complete: {task}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    let scratch = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("console-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).unwrap();
    let driver = Driver::start(&chromedriver, &scratch.join("chromedriver.log")).await;
    let browser = driver.session(&chromium, &scratch.join("profile")).await;
    browser.goto(&format!("{base}/console")).await;

    // The histogram of the completed tasks is drawn.
    let stats = browser
        .wait_for(
            "the lateness statistics",
            "const s = document.querySelector('#lateness-stats').textContent; \
             return s.includes('p99') ? s : null",
            json!([]),
        )
        .await;
    assert!(stats.as_str().unwrap().starts_with("12 tasks"), "{stats}");
    browser
        .wait_for(
            "the histogram's bars",
            "return document.querySelectorAll('#lateness-chart svg rect').length",
            json!([]),
        )
        .await;

    // Create from the form: ten minutes from now, with a webhook whose header is a secret.
    browser.fill("#relative-minutes", "10").await;
    browser
        .fill("#webhook-url", "https://example.com/hooks/reminder")
        .await;
    browser
        .fill("#webhook-headers", r#"{"Authorization": "Bearer s3cret"}"#)
        .await;
    browser.fill("#payload", r#"{"order": 42}"#).await;
    browser.click("#create-submit").await;
    let id = browser
        .wait_for(
            "the created task's id",
            "return document.querySelector('#message').dataset.id",
            json!([]),
        )
        .await;
    let id = id.as_str().unwrap().to_string();
    let stored = get(&http, &base, &id).await;
    assert_eq!(stored["status"], "SCHEDULED", "{stored}");
    assert_eq!(stored["payload"], json!({"order": 42}));
    // Header values are write-only: the API shows the name only.
    assert_eq!(stored["webhook"]["headers"]["Authorization"], api::REDACTED);

    // It is listed among the SCHEDULED tasks; open it from the list.
    let row = format!("#tasks tbody tr[data-id=\"{id}\"]");
    browser
        .wait_for(
            "the task in the list",
            "return document.querySelector(arguments[0]) !== null",
            json!([row]),
        )
        .await;
    browser
        .run("document.querySelector('#detail').hidden = true", json!([]))
        .await;
    browser.click(&row).await;
    browser
        .wait_for(
            "the task's detail",
            "const d = document.querySelector('#detail'); \
             return !d.hidden && document.querySelector('#detail-id').textContent === arguments[0]",
            json!([id]),
        )
        .await;
    assert_eq!(browser.text("#detail-status").await, "SCHEDULED");
    let webhook = browser.text("#detail-webhook").await;
    assert!(
        webhook.contains("Authorization") && !webhook.contains("s3cret"),
        "the header's value is redacted: {webhook}"
    );
    assert!(browser.text("#detail-payload").await.contains("42"));

    // Cancel it from the detail.
    browser.click("#action-cancel").await;
    browser
        .wait_for(
            "CANCELLED",
            "return document.querySelector('#detail-status').textContent === 'CANCELLED'",
            json!([]),
        )
        .await;
    assert_eq!(get(&http, &base, &id).await["status"], "CANCELLED");
    browser
        .wait_for(
            "no cancel action on a cancelled task",
            "return document.querySelector('#action-cancel') === null",
            json!([]),
        )
        .await;

    let png = browser.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    std::fs::write(SCREENSHOT, png).unwrap();
    println!("screenshot: {SCREENSHOT}");
    browser.close().await;
    drop(driver);
    let _ = std::fs::remove_dir_all(&scratch);
}
