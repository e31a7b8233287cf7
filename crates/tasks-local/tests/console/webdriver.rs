//! Just enough of the W3C WebDriver protocol to drive headless Chromium through chromedriver.

use serde_json::{json, Value};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The key under which WebDriver returns an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
const POLL: Duration = Duration::from_millis(100);

/// Finds a program on PATH; `None` when it is not installed.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|path| path.is_file())
    })
}

/// chromedriver in its own process group, so that dropping it also ends the browser it started.
pub struct Driver {
    child: Child,
    url: String,
    http: reqwest::Client,
}

impl Driver {
    pub async fn start(chromedriver: &Path, log: &Path) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let log_file = std::fs::File::create(log).expect("chromedriver log file");
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", chromedriver.display()));
        let driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let status = driver
                .http
                .get(format!("{}/status", driver.url))
                .send()
                .await;
            if let Ok(response) = status {
                let body: Value = response.json().await.unwrap_or_default();
                if body["value"]["ready"] == true {
                    return driver;
                }
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not become ready within 20 s (log: {})",
                log.display()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// A headless Chromium session with a fresh profile in `profile`.
    pub async fn session(&self, chromium: &Path, profile: &Path) -> Session {
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1400,1200",
        ]
        .map(String::from)
        .into_iter()
        .chain([format!("--user-data-dir={}", profile.display())])
        .collect::<Vec<_>>();
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
        }}});
        let created = call(
            &self.http,
            "POST",
            &format!("{}/session", self.url),
            Some(capabilities),
        )
        .await;
        let id = created["sessionId"]
            .as_str()
            .expect("a session id")
            .to_string();
        Session {
            http: self.http.clone(),
            url: format!("{}/session/{id}", self.url),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The negative pid names the process group: chromedriver and every browser process.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

async fn call(http: &reqwest::Client, method: &str, url: &str, body: Option<Value>) -> Value {
    let request = match method {
        "GET" => http.get(url),
        "DELETE" => http.delete(url),
        _ => http.post(url).json(&body.unwrap_or_else(|| json!({}))),
    };
    let response = request
        .send()
        .await
        .unwrap_or_else(|error| panic!("WebDriver {method} {url}: {error}"));
    let status = response.status();
    let body: Value = response.json().await.unwrap_or_default();
    assert!(
        status.is_success(),
        "WebDriver {method} {url}: {status} {body}"
    );
    body["value"].clone()
}

pub struct Session {
    http: reqwest::Client,
    url: String,
}

impl Session {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        call(&self.http, method, &format!("{}{path}", self.url), body).await
    }

    pub async fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({"url": url}))).await;
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page.
    pub async fn run(&self, script: &str, args: Value) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// Polls `script` until it returns something other than null, false or "".
    pub async fn wait_for(&self, what: &str, script: &str, args: Value) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let value = self.run(script, args.clone()).await;
            if !(value.is_null() || value == false || value == "") {
                return value;
            }
            if Instant::now() > deadline {
                let message = self
                    .run(
                        "return document.querySelector('#message').textContent",
                        json!([]),
                    )
                    .await;
                panic!("timed out waiting for {what}; the console says: {message}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn element(&self, css: &str) -> String {
        let found = self
            .call(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        found[ELEMENT]
            .as_str()
            .expect("an element reference")
            .to_string()
    }

    pub async fn click(&self, css: &str) {
        let element = self.element(css).await;
        self.call("POST", &format!("/element/{element}/click"), None)
            .await;
    }

    /// Replaces the text of an input or textarea, typing it as a user would.
    pub async fn fill(&self, css: &str, text: &str) {
        let element = self.element(css).await;
        self.call("POST", &format!("/element/{element}/clear"), None)
            .await;
        self.call(
            "POST",
            &format!("/element/{element}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    pub async fn text(&self, css: &str) -> String {
        let element = self.element(css).await;
        let text = self
            .call("GET", &format!("/element/{element}/text"), None)
            .await;
        text.as_str().unwrap_or_default().to_string()
    }

    /// A PNG of the window.
    pub async fn screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        let encoded = self.call("GET", "/screenshot", None).await;
        base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().expect("base64 PNG"))
            .expect("a base64 screenshot")
    }

    pub async fn close(self) {
        self.call("DELETE", "", None).await;
    }
}
