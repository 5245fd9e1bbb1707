//! Prints load figures for a medgate release build on this machine.
//!
//! It seeds one project with Patients, Observations and Encounters, and ten other projects with
//! a few resources each so that project filtering has something to filter. It creates a
//! patient user whose access policy limits it to its own Patient compartment, starts the
//! server binary as a separate process on 127.0.0.1, and measures:
//! - the latency of a policy-filtered search (`Observation?subject=Patient/<id>`), one
//!   request at a time, as p50/p95/p99;
//! - the throughput of `GET /fhir/R4/Patient/<id>` with a bearer token from many concurrent
//!   connections, for a fixed time.
//!
//! The load generator runs on the same machine as the server and shares its cores, so the
//! throughput figure is a lower bound of what the server alone would sustain.

mod seed;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::{Value, json};

#[derive(Debug, Parser)]
#[command(about = "Seeds a database, starts medgate and prints search latency and read throughput")]
struct Args {
    /// `sqlite` (a temporary file) or a PostgreSQL server URL such as
    /// postgres://postgres@127.0.0.1:5432/postgres (a temporary database is created and dropped)
    #[arg(long, default_value = "sqlite")]
    database: String,

    /// Resources in the measured project (one tenth Patients, six tenths Observations, three
    /// tenths Encounters)
    #[arg(long, default_value_t = 100_000)]
    resources: usize,

    /// The medgate binary to start
    #[arg(long, default_value = "target/release/medgate")]
    server_bin: PathBuf,

    /// Sequential searches to time
    #[arg(long, default_value_t = 300)]
    searches: usize,

    /// Seconds of read load
    #[arg(long, default_value_t = 10)]
    seconds: u64,

    /// Concurrent connections for the read load
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
}

const ADMIN_PASSWORD: &str = "bench-Lantern-47-orbit";

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn wait_ready(client: &reqwest::Client, base_url: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(response) = client
            .get(format!("{base_url}.well-known/jwks.json"))
            .send()
            .await
            && response.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("the server did not respond within 60 seconds; check that the binary starts")
}

/// Signs the patient in through `/auth/login` and the token endpoint.
async fn patient_token(
    client: &reqwest::Client,
    base_url: &str,
    seeded: &seed::Seeded,
) -> anyhow::Result<String> {
    let verifier = "b".repeat(64);
    let login: Value = client
        .post(format!("{base_url}auth/login"))
        .json(&json!({"email": seeded.patient_email, "password": seeded.patient_password,
            "projectId": seeded.project_id, "codeChallenge": verifier, "codeChallengeMethod": "plain"}))
        .send()
        .await?
        .json()
        .await?;
    let code = login["code"]
        .as_str()
        .with_context(|| format!("sign-in failed: {login}"))?;
    let tokens: Value = client
        .post(format!("{base_url}oauth2/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("code_verifier", &verifier),
        ])
        .send()
        .await?
        .json()
        .await?;
    tokens["access_token"]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("token request failed: {tokens}"))
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

async fn time_searches(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    count: usize,
    expected: usize,
) -> anyhow::Result<Vec<Duration>> {
    let mut latencies = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        let response = client.get(url).bearer_auth(token).send().await?;
        let status = response.status();
        let bundle: Value = response.json().await?;
        latencies.push(started.elapsed());
        let entries = bundle["entry"].as_array().map(Vec::len).unwrap_or_default();
        if !status.is_success() || entries != expected {
            bail!("search returned {status} with {entries} entries, expected {expected}: {bundle}");
        }
    }
    latencies.sort();
    Ok(latencies)
}

async fn read_load(
    client: reqwest::Client,
    url: String,
    token: String,
    seconds: u64,
    concurrency: usize,
) -> (u64, u64, Vec<Duration>) {
    let stop = Arc::new(AtomicBool::new(false));
    let succeeded = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (client, url, token) = (client.clone(), url.clone(), token.clone());
        let (stop, succeeded, failed) = (stop.clone(), succeeded.clone(), failed.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                match client.get(&url).bearer_auth(&token).send().await {
                    Ok(response) if response.status().is_success() => {
                        let _ = response.bytes().await;
                        succeeded.fetch_add(1, Ordering::Relaxed);
                        latencies.push(started.elapsed());
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            latencies
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await.unwrap_or_default());
    }
    latencies.sort();
    (
        succeeded.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        latencies,
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.server_bin.exists(),
        "{} does not exist; run `cargo build --release` first",
        args.server_bin.display()
    );
    let data = tempfile::tempdir()?;
    let database = seed::Database::create(&args.database, data.path()).await?;

    println!(
        "seeding {} resources into {} ...",
        args.resources,
        database.kind()
    );
    let started = Instant::now();
    let seeded = seed::seed(&database.url, args.resources, ADMIN_PASSWORD).await?;
    println!("seeded in {:.1} s", started.elapsed().as_secs_f64());

    let port = free_port()?;
    let base_url = format!("http://127.0.0.1:{port}/");
    let child = Command::new(&args.server_bin)
        .args([
            "--port",
            &port.to_string(),
            "--base-url",
            &base_url,
            "--database-url",
            &database.url,
        ])
        .args(["--data-dir", data.path().to_str().unwrap_or(".")])
        .env("MEDGATE_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", args.server_bin.display()))?;
    let _server = Server(child);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    wait_ready(&client, &base_url).await?;
    let token = patient_token(&client, &base_url, &seeded).await?;

    let search_url = format!(
        "{base_url}fhir/R4/Observation?subject=Patient/{}&_count=100",
        seeded.patient_id
    );
    time_searches(
        &client,
        &search_url,
        &token,
        10,
        seeded.observations_per_patient,
    )
    .await?;
    let latencies = time_searches(
        &client,
        &search_url,
        &token,
        args.searches,
        seeded.observations_per_patient,
    )
    .await?;
    println!(
        "policy-filtered search ({} results, {} sequential requests): p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms",
        seeded.observations_per_patient,
        latencies.len(),
        millis(percentile(&latencies, 0.50)),
        millis(percentile(&latencies, 0.95)),
        millis(percentile(&latencies, 0.99)),
    );

    let read_url = format!("{base_url}fhir/R4/Patient/{}", seeded.patient_id);
    let (succeeded, failed, latencies) =
        read_load(client, read_url, token, args.seconds, args.concurrency).await;
    if latencies.is_empty() {
        bail!("no read succeeded ({failed} failed)");
    }
    println!(
        "bearer-token reads ({} connections, {} s): {:.0} requests/s, {} failed, p50 {:.2} ms, p95 {:.2} ms",
        args.concurrency,
        args.seconds,
        succeeded as f64 / args.seconds as f64,
        failed,
        millis(percentile(&latencies, 0.50)),
        millis(percentile(&latencies, 0.95)),
    );
    database.drop().await?;
    Ok(())
}
