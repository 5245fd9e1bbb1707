//! The `medgate` binary as a user runs it: help text, first start with a generated admin
//! password, a restart, and a graceful stop on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server {
    child: Child,
    port: u16,
}

fn start(data_dir: &std::path::Path, port: u16) -> Server {
    start_with_args(data_dir, port, &[])
}

fn start_with_args(data_dir: &std::path::Path, port: u16, extra: &[&str]) -> Server {
    let child = Command::new(env!("CARGO_BIN_EXE_medgate"))
        .args([
            "--port",
            &port.to_string(),
            "--data-dir",
            data_dir.to_str().unwrap(),
            "--log-format",
            "json",
        ])
        .args(extra)
        .env_remove("MEDGATE_ADMIN_PASSWORD")
        .env("MEDGATE_ADMIN_EMAIL", "Owner@Example.com")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Server { child, port }
}

async fn wait_ready(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = format!("http://127.0.0.1:{port}/.well-known/openid-configuration");
    while Instant::now() < deadline {
        if let Ok(response) = reqwest::get(&url).await
            && response.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("server on port {port} did not become ready");
}

fn stop(mut server: Server) -> (std::process::ExitStatus, String, String) {
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = server.child.wait().unwrap();
    let mut stdout = String::new();
    let mut stderr = String::new();
    for line in BufReader::new(server.child.stdout.take().unwrap()).lines() {
        stdout.push_str(&line.unwrap());
        stdout.push('\n');
    }
    for line in BufReader::new(server.child.stderr.take().unwrap()).lines() {
        stderr.push_str(&line.unwrap());
        stderr.push('\n');
    }
    (exit, stdout, stderr)
}

#[test]
fn help_documents_settings() {
    let output = Command::new(env!("CARGO_BIN_EXE_medgate"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for flag in [
        "--port",
        "--bind",
        "--base-url",
        "--database-url",
        "--data-dir",
        "--log-format",
        "--config",
        "--default-auth-rate-limit",
        "--lockout-max-attempts",
        "--lockout-seconds",
        "--lockout-max-seconds",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
    for variable in [
        "MEDGATE_PORT",
        "MEDGATE_BIND",
        "MEDGATE_BASE_URL",
        "MEDGATE_DATABASE_URL",
    ] {
        assert!(help.contains(variable), "{variable} missing from --help");
    }
}

#[tokio::test]
async fn first_start_prints_password_once() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = start(data.path(), port);
    wait_ready(port).await;
    let (exit, stdout, stderr) = stop(server);
    assert!(
        exit.success(),
        "SIGTERM stops the server cleanly: {exit:?}\n{stderr}"
    );
    assert!(stderr.contains("medgate stopped"), "{stderr}");

    let password = stdout
        .lines()
        .find_map(|line| {
            line.strip_prefix("medgate: created admin user owner@example.com with password ")
        })
        .unwrap_or_else(|| panic!("the generated password is printed: {stdout}\n{stderr}"))
        .trim()
        .to_string();
    assert!(password.len() >= 16);
    assert!(
        !stderr.contains(&password),
        "the password must not reach the logs"
    );
    for entry in walk(data.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !bytes
                .windows(password.len())
                .any(|window| window == password.as_bytes()),
            "the password was written to {}",
            entry.display()
        );
    }

    // The password works, and a second start keeps the same admin and prints nothing.
    let port = free_port();
    let server = start(data.path(), port);
    wait_ready(port).await;
    let client = reqwest::Client::new();
    let response = client
        .post(format!("http://127.0.0.1:{}/auth/login", server.port))
        .json(&serde_json::json!({"email": "owner@example.com", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (exit, stdout, _) = stop(server);
    assert!(exit.success());
    assert!(!stdout.contains("created admin user"), "{stdout}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test]
async fn auth_rate_limit_flag_applies() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = start_with_args(data.path(), port, &["--default-auth-rate-limit", "2"]);
    wait_ready(port).await;
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let response = client
            .post(format!("http://127.0.0.1:{port}/auth/login"))
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.headers()["ratelimit-policy"],
            "\"requests\";q=2;w=60"
        );
        statuses.push(response.status().as_u16());
    }
    let (exit, _, stderr) = stop(server);
    assert!(exit.success(), "{stderr}");
    assert_eq!(statuses, [400, 400, 429]);
}
