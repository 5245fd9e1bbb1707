//! Server settings from command-line flags, environment variables and an optional JSON
//! config file, in that order of precedence, then built-in defaults.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use medgate_service::Secret;
use medgate_service::access::IpNet;
use medgate_service::config::DEFAULT_AUTH_RATE_LIMIT;
use medgate_service::email::config::SmtpSettings;
use medgate_store::LockoutPolicy;
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Flags shared by every command. Each can also come from the environment variable named in
/// its help, or from the config file under the key in its doc comment.
#[derive(Debug, Clone, Args)]
pub struct SettingsArgs {
    /// TCP port to listen on [default: 8103] (config key `port`)
    #[arg(long, env = "MEDGATE_PORT", global = true)]
    pub port: Option<u16>,

    /// Address to listen on [default: 127.0.0.1] (config key `bind`)
    #[arg(long, env = "MEDGATE_BIND", global = true)]
    pub bind: Option<String>,

    /// Public base URL, used as the token issuer and in discovery documents
    /// [default: http://localhost:<port>/] (config key `baseUrl`)
    #[arg(long, env = "MEDGATE_BASE_URL", global = true)]
    pub base_url: Option<String>,

    /// Database URL: sqlite://PATH or postgres://USER@HOST:PORT/DB
    /// [default: sqlite://<data-dir>/medgate.db] (config key `databaseUrl`)
    #[arg(long, env = "MEDGATE_DATABASE_URL", global = true)]
    pub database_url: Option<String>,

    /// Directory for the embedded database and other local files [default: ./data]
    /// (config key `dataDir`)
    #[arg(long, env = "MEDGATE_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,

    /// Log line format [default: text] (config key `logFormat`)
    #[arg(long, env = "MEDGATE_LOG_FORMAT", value_enum, global = true)]
    pub log_format: Option<LogFormat>,

    /// Optional JSON config file with the keys named above
    #[arg(long, env = "MEDGATE_CONFIG", global = true)]
    pub config: Option<PathBuf>,

    /// Refuse PKCE `plain` and accept only S256 (config key `requirePkceS256`)
    #[arg(long, env = "MEDGATE_REQUIRE_PKCE_S256", global = true)]
    pub require_pkce_s256: Option<bool>,

    /// Address or CIDR block of a reverse proxy whose X-Forwarded-For header names the
    /// client, e.g. 10.0.0.0/8; repeat the flag or separate entries with commas
    /// [default: none, the socket address is the client] (config key `trustedProxies`)
    #[arg(
        long = "trusted-proxy",
        env = "MEDGATE_TRUSTED_PROXIES",
        value_delimiter = ',',
        global = true
    )]
    pub trusted_proxies: Vec<String>,

    /// SMTP server for outgoing email; without it, messages are written as .eml files to
    /// <data-dir>/mail (config key `smtpHost`)
    #[arg(long, env = "MEDGATE_SMTP_HOST", global = true)]
    pub smtp_host: Option<String>,

    /// SMTP port [default: 587] (config key `smtpPort`)
    #[arg(long, env = "MEDGATE_SMTP_PORT", global = true)]
    pub smtp_port: Option<u16>,

    /// true: TLS from the first byte (implicit TLS). false: STARTTLS, which is required unless
    /// the host is a loopback address [default: true on port 465, otherwise false] (config
    /// key `smtpSecure`)
    #[arg(long, env = "MEDGATE_SMTP_SECURE", global = true)]
    pub smtp_secure: Option<bool>,

    /// SMTP user name; set it together with the password (config key `smtpUsername`)
    #[arg(long, env = "MEDGATE_SMTP_USERNAME", global = true)]
    pub smtp_username: Option<String>,

    /// SMTP password; prefer the environment variable to the flag, which other local users
    /// can read in the process list (config key `smtpPassword`)
    #[arg(
        long,
        env = "MEDGATE_SMTP_PASSWORD",
        hide_env_values = true,
        global = true
    )]
    pub smtp_password: Option<String>,

    /// Sender address of the server's email, optionally with a display name
    /// [default: medgate <noreply@localhost>] (config key `supportEmail`)
    #[arg(long, env = "MEDGATE_SUPPORT_EMAIL", global = true)]
    pub support_email: Option<String>,

    /// Let projects send email through their own SMTP server (the smtp* entries of
    /// Project.secret) [default: true] (config key `allowProjectSmtp`)
    #[arg(long, env = "MEDGATE_ALLOW_PROJECT_SMTP", global = true)]
    pub allow_project_smtp: Option<bool>,

    /// TOTP time steps of 30 seconds accepted on each side of the current one, for clock
    /// drift between server and authenticator app [default: 1] (config key
    /// `mfaAuthenticatorWindow`)
    #[arg(long, env = "MEDGATE_MFA_AUTHENTICATOR_WINDOW", global = true)]
    pub mfa_authenticator_window: Option<u32>,
    /// Base URL of the web app whose set-password page the emailed links open
    /// [default: the base URL] (config key `appBaseUrl`)
    #[arg(long, env = "MEDGATE_APP_BASE_URL", global = true)]
    pub app_base_url: Option<String>,

    /// Allow self-registration with POST /auth/newuser and /auth/newpatient
    /// [default: true] (config key `registerEnabled`)
    #[arg(long, env = "MEDGATE_REGISTER_ENABLED", global = true)]
    pub register_enabled: Option<bool>,

    /// The server's reCAPTCHA site key (config key `recaptchaSiteKey`)
    #[arg(long, env = "MEDGATE_RECAPTCHA_SITE_KEY", global = true)]
    pub recaptcha_site_key: Option<String>,

    /// The server's reCAPTCHA secret key; without it the server's own site key needs no
    /// reCAPTCHA. Prefer the environment variable or the config file, because command lines
    /// are visible to other users (config key `recaptchaSecretKey`)
    #[arg(
        long,
        env = "MEDGATE_RECAPTCHA_SECRET_KEY",
        global = true,
        hide_env_values = true
    )]
    pub recaptcha_secret_key: Option<Secret<String>>,

    /// The reCAPTCHA siteverify URL
    /// [default: https://www.google.com/recaptcha/api/siteverify] (config key `recaptchaVerifyUrl`)
    #[arg(long, env = "MEDGATE_RECAPTCHA_VERIFY_URL", global = true)]
    pub recaptcha_verify_url: Option<String>,

    /// Requests per client address per minute on /auth/* and /oauth2/*, or -1 for no limit
    /// [default: 160] (config key `defaultAuthRateLimit`, Medplum's name)
    #[arg(
        long,
        env = "MEDGATE_DEFAULT_AUTH_RATE_LIMIT",
        allow_negative_numbers = true,
        global = true
    )]
    pub default_auth_rate_limit: Option<i64>,

    /// Failed password or MFA attempts before an account is locked [default: 5]
    /// (config key `lockoutMaxAttempts`)
    #[arg(long, env = "MEDGATE_LOCKOUT_MAX_ATTEMPTS", global = true)]
    pub lockout_max_attempts: Option<u32>,

    /// Seconds of an account's first lock; each further lock doubles it [default: 60]
    /// (config key `lockoutSeconds`)
    #[arg(long, env = "MEDGATE_LOCKOUT_SECONDS", global = true)]
    pub lockout_seconds: Option<u32>,

    /// Maximum seconds of an account lock [default: 3600] (config key `lockoutMaxSeconds`)
    #[arg(long, env = "MEDGATE_LOCKOUT_MAX_SECONDS", global = true)]
    pub lockout_max_seconds: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileSettings {
    port: Option<u16>,
    bind: Option<String>,
    base_url: Option<String>,
    database_url: Option<String>,
    data_dir: Option<PathBuf>,
    log_format: Option<LogFormat>,
    require_pkce_s256: Option<bool>,
    trusted_proxies: Option<Vec<String>>,
    smtp_host: Option<String>,
    smtp_port: Option<u16>,
    smtp_secure: Option<bool>,
    smtp_username: Option<String>,
    smtp_password: Option<String>,
    support_email: Option<String>,
    allow_project_smtp: Option<bool>,
    mfa_authenticator_window: Option<u32>,
    app_base_url: Option<String>,
    register_enabled: Option<bool>,
    recaptcha_site_key: Option<String>,
    recaptcha_secret_key: Option<Secret<String>>,
    recaptcha_verify_url: Option<String>,
    default_auth_rate_limit: Option<i64>,
    lockout_max_attempts: Option<u32>,
    lockout_seconds: Option<u32>,
    lockout_max_seconds: Option<u32>,
}

/// Resolved settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub port: u16,
    pub bind: String,
    pub base_url: String,
    pub database_url: String,
    pub data_dir: PathBuf,
    pub log_format: LogFormat,
    pub require_pkce_s256: bool,
    pub trusted_proxies: Vec<IpNet>,
    /// `None`: write messages to `<data_dir>/mail`.
    pub smtp: Option<SmtpSettings>,
    pub support_email: Option<String>,
    pub allow_project_smtp: bool,
    pub mfa_authenticator_window: u32,
    /// `None` means the base URL.
    pub app_base_url: Option<String>,
    pub register_enabled: bool,
    pub recaptcha_site_key: Option<String>,
    pub recaptcha_secret_key: Option<Secret<String>>,
    /// `None` means Google's siteverify endpoint.
    pub recaptcha_verify_url: Option<String>,
    /// Requests per client address per minute on the auth routes; `None` for no limit.
    pub auth_rate_limit: Option<u32>,
    pub lockout: LockoutPolicy,
}

fn read_file(path: &Path) -> anyhow::Result<FileSettings> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}

impl SettingsArgs {
    pub fn resolve(self) -> anyhow::Result<Settings> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => FileSettings::default(),
        };
        let port = self.port.or(file.port).unwrap_or(8103);
        let data_dir = self
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("./data"));
        let database_url = self
            .database_url
            .or(file.database_url)
            .unwrap_or_else(|| format!("sqlite://{}/medgate.db", data_dir.display()));
        let base_url = self
            .base_url
            .or(file.base_url)
            .unwrap_or_else(|| format!("http://localhost:{port}/"));
        if url::Url::parse(&base_url).is_err()
            || !(base_url.starts_with("http://") || base_url.starts_with("https://"))
        {
            bail!("invalid base URL {base_url:?}: it must be an absolute http:// or https:// URL");
        }
        let trusted_proxies = if self.trusted_proxies.is_empty() {
            file.trusted_proxies.unwrap_or_default()
        } else {
            self.trusted_proxies
        };
        let trusted_proxies = trusted_proxies
            .iter()
            .filter(|entry| !entry.trim().is_empty())
            .map(|entry| {
                entry.trim().parse::<IpNet>().map_err(|error| {
                    anyhow::anyhow!("invalid trusted proxy: {error}; use an address such as 10.0.0.5 or a CIDR block such as 10.0.0.0/8")
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let smtp = resolve_smtp(
            self.smtp_host.or(file.smtp_host),
            self.smtp_port.or(file.smtp_port),
            self.smtp_secure.or(file.smtp_secure),
            self.smtp_username.or(file.smtp_username),
            self.smtp_password.or(file.smtp_password),
        )?;
        let auth_rate_limit = match self
            .default_auth_rate_limit
            .or(file.default_auth_rate_limit)
        {
            None => Some(DEFAULT_AUTH_RATE_LIMIT),
            Some(-1) => None,
            Some(limit) => match u32::try_from(limit) {
                Ok(limit) if limit > 0 => Some(limit),
                _ => bail!(
                    "invalid defaultAuthRateLimit {limit}: use a positive number of requests per minute, or -1 for no limit"
                ),
            },
        };
        let defaults = LockoutPolicy::default();
        let seconds = |value: Option<u32>, default: chrono::Duration| {
            value.map_or(default, |seconds| {
                chrono::Duration::seconds(i64::from(seconds))
            })
        };
        let lockout = LockoutPolicy {
            max_attempts: self
                .lockout_max_attempts
                .or(file.lockout_max_attempts)
                .unwrap_or(defaults.max_attempts),
            first_lock: seconds(
                self.lockout_seconds.or(file.lockout_seconds),
                defaults.first_lock,
            ),
            max_lock: seconds(
                self.lockout_max_seconds.or(file.lockout_max_seconds),
                defaults.max_lock,
            ),
            forget_after: defaults.forget_after,
        };
        if lockout.max_attempts == 0 {
            bail!("invalid lockoutMaxAttempts 0: an account needs at least one attempt");
        }
        Ok(Settings {
            auth_rate_limit,
            lockout,
            port,
            bind: self
                .bind
                .or(file.bind)
                .unwrap_or_else(|| "127.0.0.1".to_string()),
            base_url,
            database_url,
            data_dir,
            log_format: self
                .log_format
                .or(file.log_format)
                .unwrap_or(LogFormat::Text),
            require_pkce_s256: self
                .require_pkce_s256
                .or(file.require_pkce_s256)
                .unwrap_or(false),
            trusted_proxies,
            smtp,
            support_email: self.support_email.or(file.support_email),
            allow_project_smtp: self
                .allow_project_smtp
                .or(file.allow_project_smtp)
                .unwrap_or(true),
            mfa_authenticator_window: self
                .mfa_authenticator_window
                .or(file.mfa_authenticator_window)
                .unwrap_or(1),
            app_base_url: self.app_base_url.or(file.app_base_url),
            register_enabled: self
                .register_enabled
                .or(file.register_enabled)
                .unwrap_or(true),
            recaptcha_site_key: self.recaptcha_site_key.or(file.recaptcha_site_key),
            recaptcha_secret_key: self.recaptcha_secret_key.or(file.recaptcha_secret_key),
            recaptcha_verify_url: self.recaptcha_verify_url.or(file.recaptcha_verify_url),
        })
    }
}

fn resolve_smtp(
    host: Option<String>,
    port: Option<u16>,
    secure: Option<bool>,
    username: Option<String>,
    password: Option<String>,
) -> anyhow::Result<Option<SmtpSettings>> {
    let Some(host) = host.filter(|host| !host.trim().is_empty()) else {
        if port.is_some() || username.is_some() || password.is_some() {
            bail!(
                "SMTP settings without an SMTP host: set smtpHost or remove the other smtp* settings"
            );
        }
        return Ok(None);
    };
    if username.is_some() != password.is_some() {
        bail!("set the SMTP user name and password together, or neither");
    }
    Ok(Some(SmtpSettings {
        host: host.trim().to_string(),
        port: port.unwrap_or(587),
        secure,
        username,
        password: password.map(Secret::new),
    }))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(flatten)]
        settings: SettingsArgs,
    }

    fn resolve(args: &[&str]) -> anyhow::Result<Settings> {
        TestCli::try_parse_from(std::iter::once("medgate").chain(args.iter().copied()))?
            .settings
            .resolve()
    }

    // One test owns the process environment, so the cases run in order.
    #[test]
    fn flags_beat_environment_beat_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("medgate.json");
        std::fs::write(
            &file,
            r#"{"port": 9200, "bind": "0.0.0.0", "logFormat": "json"}"#,
        )
        .unwrap();
        let file = file.to_str().unwrap();

        let settings = resolve(&[]).unwrap();
        assert_eq!(settings.port, 8103);
        assert_eq!(settings.bind, "127.0.0.1");
        assert_eq!(settings.base_url, "http://localhost:8103/");
        assert_eq!(settings.database_url, "sqlite://./data/medgate.db");

        let settings = resolve(&["--config", file]).unwrap();
        assert_eq!(settings.port, 9200);
        assert_eq!(settings.bind, "0.0.0.0");
        assert_eq!(settings.log_format, LogFormat::Json);

        // SAFETY: no other test in this binary reads or writes the environment.
        unsafe { std::env::set_var("MEDGATE_PORT", "9000") };
        let from_environment = resolve(&["--config", file]).map(|settings| settings.port);
        let from_flag =
            resolve(&["--config", file, "--port", "9100"]).map(|settings| settings.port);
        unsafe { std::env::remove_var("MEDGATE_PORT") };
        assert_eq!(from_environment.unwrap(), 9000);
        assert_eq!(from_flag.unwrap(), 9100);
    }

    #[test]
    fn config_file_errors_are_clear() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.json");
        std::fs::write(&file, r#"{"prot": 1}"#).unwrap();
        let error = resolve(&["--config", file.to_str().unwrap()]).unwrap_err();
        assert!(
            format!("{error:#}").contains("unknown field `prot`"),
            "{error:#}"
        );
        let error = resolve(&["--config", "/no/such/file.json"]).unwrap_err();
        assert!(error.to_string().contains("cannot read config file"));
    }

    #[test]
    fn mfa_window_from_flag_and_file() {
        assert_eq!(resolve(&[]).unwrap().mfa_authenticator_window, 1);
        let settings = resolve(&["--mfa-authenticator-window", "2"]).unwrap();
        assert_eq!(settings.mfa_authenticator_window, 2);

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("medgate.json");
        std::fs::write(&file, r#"{"mfaAuthenticatorWindow": 0}"#).unwrap();
        let settings = resolve(&["--config", file.to_str().unwrap()]).unwrap();
        assert_eq!(settings.mfa_authenticator_window, 0);
    }

    #[test]
    fn registration_and_recaptcha_keys() {
        let settings = resolve(&[]).unwrap();
        assert!(settings.register_enabled);
        assert!(settings.recaptcha_secret_key.is_none());

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("medgate.json");
        std::fs::write(
            &file,
            r#"{"registerEnabled": false, "appBaseUrl": "https://app.example.com/",
                "recaptchaSiteKey": "site", "recaptchaSecretKey": "secret",
                "recaptchaVerifyUrl": "http://127.0.0.1:9/siteverify"}"#,
        )
        .unwrap();
        let settings = resolve(&["--config", file.to_str().unwrap()]).unwrap();
        assert!(!settings.register_enabled);
        assert_eq!(
            settings.app_base_url.as_deref(),
            Some("https://app.example.com/")
        );
        assert_eq!(settings.recaptcha_site_key.as_deref(), Some("site"));
        assert_eq!(
            settings
                .recaptcha_secret_key
                .as_ref()
                .map(|key| key.expose().as_str()),
            Some("secret")
        );
        assert!(!format!("{settings:?}").contains("\"secret\""));
        assert_eq!(
            settings.recaptcha_verify_url.as_deref(),
            Some("http://127.0.0.1:9/siteverify")
        );
    }

    #[test]
    fn trusted_proxies_from_flags_and_file() {
        let settings = resolve(&[
            "--trusted-proxy",
            "10.0.0.0/8,::1",
            "--trusted-proxy",
            "127.0.0.1",
        ])
        .unwrap();
        assert_eq!(settings.trusted_proxies.len(), 3);
        assert!(resolve(&["--trusted-proxy", "10.0.0.0/40"]).is_err());

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("medgate.json");
        std::fs::write(&file, r#"{"trustedProxies": ["192.168.0.0/16"]}"#).unwrap();
        let settings = resolve(&["--config", file.to_str().unwrap()]).unwrap();
        assert_eq!(
            settings.trusted_proxies,
            vec!["192.168.0.0/16".parse().unwrap()]
        );
    }

    #[test]
    fn abuse_limits_from_flags_and_file() {
        let settings = resolve(&[]).unwrap();
        assert_eq!(settings.auth_rate_limit, Some(160));
        assert_eq!(settings.lockout, LockoutPolicy::default());

        let settings = resolve(&[
            "--default-auth-rate-limit",
            "-1",
            "--lockout-max-attempts",
            "3",
            "--lockout-seconds",
            "30",
            "--lockout-max-seconds",
            "600",
        ])
        .unwrap();
        assert_eq!(settings.auth_rate_limit, None);
        assert_eq!(settings.lockout.max_attempts, 3);
        assert_eq!(settings.lockout.first_lock, chrono::Duration::seconds(30));
        assert_eq!(settings.lockout.max_lock, chrono::Duration::minutes(10));

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("medgate.json");
        std::fs::write(
            &file,
            r#"{"defaultAuthRateLimit": 20, "lockoutMaxAttempts": 7}"#,
        )
        .unwrap();
        let file = file.to_str().unwrap();
        let settings = resolve(&["--config", file]).unwrap();
        assert_eq!(settings.auth_rate_limit, Some(20));
        assert_eq!(settings.lockout.max_attempts, 7);
        let settings = resolve(&["--config", file, "--default-auth-rate-limit", "5"]).unwrap();
        assert_eq!(settings.auth_rate_limit, Some(5), "a flag beats the file");

        for bad in [
            &["--default-auth-rate-limit", "0"][..],
            &["--lockout-max-attempts", "0"],
        ] {
            assert!(resolve(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn base_url_must_be_http() {
        assert!(resolve(&["--base-url", "ftp://example.com/"]).is_err());
    }

    #[test]
    fn smtp_settings_need_a_host_and_both_credentials() {
        let settings = resolve(&[]).unwrap();
        assert!(settings.smtp.is_none());

        let settings = resolve(&["--smtp-host", "mail.example.com"]).unwrap();
        let smtp = settings.smtp.unwrap();
        assert_eq!(
            (smtp.host.as_str(), smtp.port, smtp.secure),
            ("mail.example.com", 587, None)
        );

        let error =
            resolve(&["--smtp-host", "mail.example.com", "--smtp-username", "a"]).unwrap_err();
        assert!(error.to_string().contains("together"), "{error}");
        let error = resolve(&["--smtp-port", "25"]).unwrap_err();
        assert!(
            error.to_string().contains("without an SMTP host"),
            "{error}"
        );
    }
}
