use local_emulator::{shared_endpoint, Moto};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn get(endpoint: &str, path: &str) -> std::io::Result<String> {
    let host = endpoint.trim_start_matches("http://");
    let mut stream = TcpStream::connect(host)?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(") ")
            .next()
            .is_some_and(|rest| !rest.starts_with('Z'))
    })
}

fn wait_until_dead(pid: u32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while alive(pid) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

#[tokio::test]
async fn started_moto_is_configured_and_dies_when_dropped() {
    let moto = Moto::start().await.unwrap_or_else(|e| panic!("{e}"));
    let endpoint = moto.endpoint().to_string();
    let pid = moto.pid();
    assert!(endpoint.starts_with("http://127.0.0.1:"), "{endpoint}");
    assert!(moto.log_path().is_file());

    let config = get(&endpoint, "/moto-api/config").unwrap();
    assert!(config.contains(r#""use_docker": false"#), "{config}");

    drop(moto);
    assert!(!alive(pid), "moto {pid} survived the drop");
    assert!(get(&endpoint, "/moto-api/config").is_err());
}

#[test]
fn the_shared_emulator_is_one_process_across_runtimes() {
    let endpoint_from_a_fresh_runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(shared_endpoint())
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let first = endpoint_from_a_fresh_runtime();
    let second = endpoint_from_a_fresh_runtime();
    assert_eq!(first, second);
    // The first runtime is gone: the server it started must still answer.
    assert!(get(first, "/moto-api/config")
        .unwrap()
        .starts_with("HTTP/1.1 201"));
}

#[cfg(target_os = "linux")]
#[test]
fn an_undropped_emulator_dies_with_its_process_but_not_with_the_thread_that_started_it() {
    const CHILD: &str = "LOCAL_EMULATOR_TEST_ORPHAN";
    const NAME: &str =
        "an_undropped_emulator_dies_with_its_process_but_not_with_the_thread_that_started_it";
    if std::env::var_os(CHILD).is_some() {
        let moto = std::thread::spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(Moto::start())
                .unwrap_or_else(|e| panic!("{e}"))
        })
        .join()
        .unwrap();
        let answers = get(moto.endpoint(), "/moto-api/config").is_ok();
        println!("moto pid={} answers={answers}", moto.pid());
        std::io::stdout().flush().unwrap();
        std::process::exit(0);
    }

    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|line| line.split_once("moto pid=").map(|(_, rest)| rest))
        .unwrap_or_else(|| {
            panic!(
                "child printed no pid: {stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    let (pid, answers) = line.split_once(" answers=").unwrap();
    let pid: u32 = pid.parse().unwrap();
    let died = wait_until_dead(pid, Duration::from_secs(10));
    if !died {
        // SAFETY: plain kill(2) on the pid the child reported, to not leak it.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    }
    assert_eq!(answers, "true", "moto died with the thread that started it");
    assert!(died, "moto {pid} outlived the process that started it");
}
