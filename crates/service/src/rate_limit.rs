//! Per-client request limits in fixed 60-second windows, as Medplum counts them. A client's
//! window starts at its first request. The counts live in this process's memory, so each
//! server instance limits on its own.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use medgate_fhir::resources::Project;
use serde_json::Value;
use tracing::warn;

/// Length of a counting window.
pub const WINDOW_SECONDS: i64 = 60;

/// Clients tracked at once. An estimated 100 bytes each with the hash table's spare room, so
/// the table stays near 10 MB.
const MAX_TRACKED_CLIENTS: usize = 100_000;

/// Returns the project's own limit of auth requests per client per minute, the `authRateLimit`
/// entry of `Project.systemSetting` (`valueInteger`), which only super admins can write.
pub fn project_auth_rate_limit(project: &Project) -> Option<u32> {
    project
        .extra
        .get("systemSetting")?
        .as_array()?
        .iter()
        .find(|setting| setting.get("name").and_then(Value::as_str) == Some("authRateLimit"))?
        .get("valueInteger")?
        .as_u64()
        .and_then(|limit| u32::try_from(limit).ok())
        .filter(|limit| *limit > 0)
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: DateTime<Utc>,
    count: u32,
}

/// The outcome of counting one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitStatus {
    pub allowed: bool,
    pub limit: u32,
    /// Requests left in the current window.
    pub remaining: u32,
    /// Requests counted in the current window, this one included.
    pub consumed: u32,
    /// Seconds until the window ends and the count starts again, at least 1.
    pub reset_seconds: u64,
}

#[derive(Default)]
struct Table {
    windows: HashMap<IpAddr, Window>,
    last_pruned: Option<DateTime<Utc>>,
}

/// Counts requests per client address. Cheap to clone; clones share the counts.
#[derive(Clone, Default)]
pub struct RateLimiter {
    table: Arc<Mutex<Table>>,
}

/// Returns the key of a client: the address itself for IPv4, and its /64 network for IPv6.
/// Providers commonly give one subscriber a whole /64, which it could otherwise rotate through.
fn client_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => {
            let network = u128::from(v6) & !((1_u128 << 64) - 1);
            IpAddr::V6(network.into())
        }
    }
}

impl RateLimiter {
    /// Counts one request of `client` against `limit` requests per window.
    pub fn check(&self, client: IpAddr, limit: u32, now: DateTime<Utc>) -> RateLimitStatus {
        let window_length = Duration::seconds(WINDOW_SECONDS);
        let key = client_key(client);
        let mut table = self
            .table
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());

        if !table.windows.contains_key(&key) && table.windows.len() >= MAX_TRACKED_CLIENTS {
            table.prune(now, window_length);
        }
        let window =
            if table.windows.len() < MAX_TRACKED_CLIENTS || table.windows.contains_key(&key) {
                let window = table.windows.entry(key).or_insert(Window {
                    started: now,
                    count: 0,
                });
                if now - window.started >= window_length {
                    *window = Window {
                        started: now,
                        count: 0,
                    };
                }
                window.count = window.count.saturating_add(1);
                *window
            } else {
                // NOTE: a new client is not counted while the table is full of clients seen in
                // the last minute. Memory stays bounded and sign-ins keep working, and the
                // per-account lockout still limits password guessing.
                warn!(
                    clients = MAX_TRACKED_CLIENTS,
                    "rate-limit table full; request not counted"
                );
                Window {
                    started: now,
                    count: 1,
                }
            };

        let reset = window.started + window_length - now;
        RateLimitStatus {
            allowed: window.count <= limit,
            limit,
            remaining: limit.saturating_sub(window.count),
            consumed: window.count,
            reset_seconds: u64::try_from((reset.num_milliseconds() + 999) / 1000)
                .unwrap_or(1)
                .max(1),
        }
    }
}

impl Table {
    /// Drops the windows that have ended, at most once a second so that a full table is not
    /// scanned on every request.
    fn prune(&mut self, now: DateTime<Utc>, window_length: Duration) {
        if self
            .last_pruned
            .is_some_and(|last| now - last < Duration::seconds(1))
        {
            return;
        }
        self.last_pruned = Some(now);
        self.windows
            .retain(|_, window| now - window.started < window_length);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    #[test]
    fn window_counts_then_resets() {
        let limiter = RateLimiter::default();
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        let now = start();
        for consumed in 1..=3 {
            let status = limiter.check(client, 3, now);
            assert!(status.allowed, "request {consumed}");
            assert_eq!(status.remaining, 3 - consumed);
            assert_eq!(status.reset_seconds, 60);
        }
        let status = limiter.check(client, 3, now + Duration::milliseconds(20_500));
        assert!(!status.allowed);
        assert_eq!(status.remaining, 0);
        assert_eq!(status.reset_seconds, 40);

        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(limiter.check(other, 3, now).allowed);

        let status = limiter.check(client, 3, now + Duration::seconds(60));
        assert!(status.allowed, "a new window starts after 60 s");
        assert_eq!(status.remaining, 2);
    }

    #[test]
    fn project_limit_from_system_setting() {
        let project = |settings: Value| Project {
            extra: serde_json::from_value(serde_json::json!({"systemSetting": settings})).unwrap(),
            ..Default::default()
        };
        let with_limit = project(serde_json::json!([
            {"name": "rateLimit", "valueInteger": 5000},
            {"name": "authRateLimit", "valueInteger": 20}
        ]));
        assert_eq!(project_auth_rate_limit(&with_limit), Some(20));
        let cases = [
            serde_json::json!([]),
            serde_json::json!([{"name": "authRateLimit", "valueInteger": -3}]),
            serde_json::json!([{"name": "authRateLimit", "valueString": "20"}]),
            serde_json::json!({"name": "authRateLimit"}),
        ];
        for settings in cases {
            assert_eq!(
                project_auth_rate_limit(&project(settings.clone())),
                None,
                "{settings}"
            );
        }
        assert_eq!(project_auth_rate_limit(&Project::default()), None);
    }

    #[test]
    fn ipv6_counts_per_64_network() {
        let limiter = RateLimiter::default();
        let now = start();
        let first: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let second: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let elsewhere: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(limiter.check(first, 1, now).allowed);
        assert!(!limiter.check(second, 1, now).allowed);
        assert!(limiter.check(elsewhere, 1, now).allowed);
    }

    #[test]
    fn full_table_prunes_ended_windows() {
        let limiter = RateLimiter::default();
        let now = start();
        {
            let mut table = limiter.table.lock().unwrap();
            for index in 0..MAX_TRACKED_CLIENTS as u32 {
                table.windows.insert(
                    IpAddr::V4(index.into()),
                    Window {
                        started: now,
                        count: 1,
                    },
                );
            }
        }
        let newcomer: IpAddr = "2001:db8::1".parse().unwrap();
        let status = limiter.check(newcomer, 1, now + Duration::seconds(61));
        assert!(status.allowed);
        let table = limiter.table.lock().unwrap();
        assert_eq!(table.windows.len(), 1, "ended windows are dropped");
    }
}
