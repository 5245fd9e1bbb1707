//! The `medgate` command: runs the server, migrates the database, bootstraps it, and rotates
//! signing keys.

mod settings;

use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use medgate_server::AppState;
use medgate_service::clock::SystemClock;
use medgate_service::email::config::TransportConfig;
use medgate_service::random::OsRandom;
use medgate_service::{Secret, ServiceConfig, Services};
use settings::{LogFormat, Settings, SettingsArgs};
use tracing::info;

/// Identity and access server for healthcare applications, wire-compatible with Medplum.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    #[command(flatten)]
    settings: SettingsArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (the default). On an empty database it first creates the super-admin
    /// project and admin user (MEDGATE_ADMIN_EMAIL, MEDGATE_ADMIN_PASSWORD).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Create the super-admin project and admin user if the database has none, and exit.
    Bootstrap,
    /// Manage signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Add a new signing key; running servers sign with it after their next key reload.
    Rotate,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
        LogFormat::Text => builder.init(),
    }
}

async fn open_services(settings: &Settings) -> anyhow::Result<Services> {
    if settings.database_url.starts_with("sqlite:") {
        std::fs::create_dir_all(&settings.data_dir).with_context(|| {
            format!(
                "cannot create data directory {}",
                settings.data_dir.display()
            )
        })?;
    }
    let store = medgate_store::connect(&settings.database_url)
        .await
        .context("cannot open the database")?;
    let mut config = ServiceConfig::new(&settings.base_url);
    config.require_pkce_s256 = settings.require_pkce_s256;
    config.trusted_proxies = settings.trusted_proxies.clone();
    config.email.transport = match &settings.smtp {
        Some(smtp) => TransportConfig::Smtp(smtp.clone()),
        None => TransportConfig::Directory(settings.data_dir.join("mail")),
    };
    if let Some(support_email) = &settings.support_email {
        config.email.from = support_email.clone();
    }
    config.email.allow_project_smtp = settings.allow_project_smtp;
    config
        .email
        .check()
        .map_err(|error| anyhow::anyhow!("invalid email settings: {error}"))?;
    config.mfa_authenticator_window = settings.mfa_authenticator_window;
    if let Some(app_base_url) = &settings.app_base_url {
        config.app_base_url = format!("{}/", app_base_url.trim_end_matches('/'));
    }
    config.register_enabled = settings.register_enabled;
    config.recaptcha.site_key = settings.recaptcha_site_key.clone();
    config.recaptcha.secret_key = settings.recaptcha_secret_key.clone();
    if let Some(url) = &settings.recaptcha_verify_url {
        config.recaptcha.verify_url = url.clone();
    }
    config.auth_rate_limit = settings.auth_rate_limit;
    config.lockout = settings.lockout;
    Ok(Services::new(
        config,
        store,
        Arc::new(SystemClock),
        Arc::new(OsRandom::new()),
    ))
}

/// Bootstraps an empty database; prints a generated admin password once, to the terminal.
async fn bootstrap(services: &Services) -> anyhow::Result<()> {
    let email =
        std::env::var("MEDGATE_ADMIN_EMAIL").unwrap_or_else(|_| "admin@example.com".to_string());
    let email = email.trim().to_lowercase();
    let password = std::env::var("MEDGATE_ADMIN_PASSWORD")
        .ok()
        .map(Secret::new);
    let outcome = services
        .bootstrap(&email, password)
        .await
        .context("bootstrap failed")?;
    if let Some(password) = outcome.generated_password {
        println!(
            "medgate: created admin user {email} with password {}",
            password.expose()
        );
        println!(
            "medgate: this password is shown only once; set MEDGATE_ADMIN_PASSWORD to choose your own."
        );
    } else if outcome.created {
        println!(
            "medgate: created admin user {email} with the password from MEDGATE_ADMIN_PASSWORD"
        );
    }
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    info!("shutdown requested; finishing in-flight requests");
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let services = open_services(&settings).await?;
    bootstrap(&services).await?;
    services
        .load_keys()
        .await
        .context("cannot load signing keys")?;
    anyhow::ensure!(
        !services.keys.is_empty(),
        "the database has no active signing key; run `medgate keys rotate`"
    );
    let address = format!("{}:{}", settings.bind, settings.port);
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .with_context(|| format!("cannot listen on {address}"))?;
    info!(address = %listener.local_addr()?, base_url = %settings.base_url, "medgate started");
    medgate_server::serve(listener, AppState { services }, shutdown_signal()).await?;
    info!("medgate stopped");
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = cli.settings.resolve()?;
    init_logging(settings.log_format);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings).await,
        Command::Migrate => {
            open_services(&settings).await?;
            info!("database migrated");
            Ok(())
        }
        Command::Bootstrap => bootstrap(&open_services(&settings).await?).await,
        Command::Keys {
            command: KeysCommand::Rotate,
        } => {
            let services = open_services(&settings).await?;
            let kid = services.rotate_signing_key().await?;
            println!("medgate: new signing key {kid}");
            Ok(())
        }
    }
}
