//! A cache of authenticated callers, so a bearer request does not read its Login,
//! membership, project and access policies and rebuild its access every time.
//!
//! Correctness comes from the store's change feed, not from an expiry: every change to a
//! resource an entry was built from removes the entry before the next request can use it.
//! This process's writes are announced before `Store::write` returns. On PostgreSQL, other
//! processes' writes arrive moments after they commit. When announcements may have been
//! missed, the whole cache is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use medgate_fhir::resources::{Login, Project, ProjectMembership};
use medgate_store::Change;
use serde_json::Value;
use tokio::sync::broadcast::{self, error::TryRecvError};

use crate::access::Access;
use crate::session::AuthContext;

/// Entries kept at most; the cache starts over when it is full, which costs one load per
/// active login.
const MAX_ENTRIES: usize = 10_000;

/// Resource types whose changes can alter any entry, and which change rarely: a change drops
/// every entry rather than tracking which entries read them.
const SHARED_TYPES: &[&str] = &["Project", "AccessPolicy", "SmartAppLaunch"];

/// The part of [`AuthContext`] that a login's requests share: all but the token's claims.
#[derive(Debug)]
pub(crate) struct CachedCaller {
    pub login: Login,
    pub membership: ProjectMembership,
    pub project: Project,
    pub access: Arc<Access>,
}

impl CachedCaller {
    pub fn context(&self, claims: Value) -> AuthContext {
        AuthContext {
            login: self.login.clone(),
            membership: self.membership.clone(),
            project: self.project.clone(),
            claims,
            on_behalf_of: None,
            access: self.access.clone(),
        }
    }
}

/// A point in the change feed: an entry built from reads made after [`AuthCache::generation`]
/// returned it may be stored only if no relevant change has arrived since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Generation(u64);

#[derive(Clone)]
pub(crate) struct AuthCache {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    changes: broadcast::Receiver<Change>,
    generation: u64,
    by_login: HashMap<String, Arc<CachedCaller>>,
    logins_by_membership: HashMap<String, Vec<String>>,
}

impl AuthCache {
    pub fn new(changes: broadcast::Receiver<Change>) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                changes,
                generation: 0,
                by_login: HashMap::new(),
                logins_by_membership: HashMap::new(),
            })),
        }
    }

    pub fn get(&self, login_id: &str) -> Option<Arc<CachedCaller>> {
        self.lock().by_login.get(login_id).cloned()
    }

    pub fn generation(&self) -> Generation {
        Generation(self.lock().generation)
    }

    /// Stores `caller` unless a change that could make it stale arrived after `since`.
    pub fn insert(&self, caller: CachedCaller, since: Generation) {
        let mut inner = self.lock();
        if inner.generation != since.0 {
            return;
        }
        if inner.by_login.len() >= MAX_ENTRIES {
            inner.clear();
        }
        let login_id = caller.login.id.clone();
        inner
            .logins_by_membership
            .entry(caller.membership.id.clone())
            .or_default()
            .push(login_id.clone());
        inner.by_login.insert(login_id, Arc::new(caller));
    }

    /// Locks the cache after applying the changes announced since the last lock, so no
    /// caller sees an entry that a committed write has made stale.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        loop {
            match inner.changes.try_recv() {
                Ok(change) => inner.apply(&change),
                Err(TryRecvError::Empty | TryRecvError::Closed) => break,
                Err(TryRecvError::Lagged(_)) => inner.apply(&Change::Unknown),
            }
        }
        inner
    }
}

impl Inner {
    fn apply(&mut self, change: &Change) {
        let (resource_type, id) = match change {
            Change::Unknown => {
                self.generation += 1;
                self.clear();
                return;
            }
            Change::Resource { resource_type, id } => (resource_type.as_str(), id.as_str()),
        };
        match resource_type {
            "Login" => {
                self.generation += 1;
                self.by_login.remove(id);
            }
            "ProjectMembership" => {
                self.generation += 1;
                for login_id in self.logins_by_membership.remove(id).unwrap_or_default() {
                    self.by_login.remove(&login_id);
                }
            }
            shared if SHARED_TYPES.contains(&shared) => {
                self.generation += 1;
                self.clear();
            }
            _ => {}
        }
    }

    fn clear(&mut self) {
        self.by_login.clear();
        self.logins_by_membership.clear();
    }
}

#[cfg(test)]
mod tests {
    use medgate_fhir::Reference;

    use super::*;
    use crate::access::{EffectivePolicy, Principal};

    fn caller(login_id: &str, membership_id: &str) -> CachedCaller {
        CachedCaller {
            login: Login {
                id: login_id.to_string(),
                ..Default::default()
            },
            membership: ProjectMembership {
                id: membership_id.to_string(),
                project: Reference {
                    reference: "Project/p".to_string(),
                    display: None,
                },
                ..Default::default()
            },
            project: Project::default(),
            access: Arc::new(Access {
                principal: Principal::Member,
                policy: EffectivePolicy::default(),
            }),
        }
    }

    fn change(resource_type: &str, id: &str) -> Change {
        Change::Resource {
            resource_type: resource_type.to_string(),
            id: id.to_string(),
        }
    }

    fn cache() -> (broadcast::Sender<Change>, AuthCache) {
        let (sender, receiver) = broadcast::channel(4);
        (sender, AuthCache::new(receiver))
    }

    #[test]
    fn login_change_drops_its_entry() {
        let (changes, cache) = cache();
        cache.insert(caller("l1", "m1"), cache.generation());
        cache.insert(caller("l2", "m2"), cache.generation());

        changes.send(change("Login", "l1")).unwrap();
        assert!(cache.get("l1").is_none());
        assert!(cache.get("l2").is_some());
    }

    #[test]
    fn membership_change_drops_its_logins() {
        let (changes, cache) = cache();
        cache.insert(caller("l1", "m1"), cache.generation());
        cache.insert(caller("l2", "m1"), cache.generation());
        cache.insert(caller("l3", "m3"), cache.generation());

        changes.send(change("ProjectMembership", "m1")).unwrap();
        assert!(cache.get("l1").is_none());
        assert!(cache.get("l2").is_none());
        assert!(cache.get("l3").is_some());
    }

    #[test]
    fn policy_change_drops_everything() {
        let (changes, cache) = cache();
        cache.insert(caller("l1", "m1"), cache.generation());

        changes.send(change("AccessPolicy", "a1")).unwrap();
        assert!(cache.get("l1").is_none());
    }

    #[test]
    fn unrelated_change_keeps_entries() {
        let (changes, cache) = cache();
        cache.insert(caller("l1", "m1"), cache.generation());

        changes.send(change("Observation", "o1")).unwrap();
        assert!(cache.get("l1").is_some());
    }

    #[test]
    fn change_during_load_skips_insert() {
        let (changes, cache) = cache();
        let since = cache.generation();

        changes.send(change("ProjectMembership", "m1")).unwrap();
        cache.insert(caller("l1", "m1"), since);
        assert!(
            cache.get("l1").is_none(),
            "built from reads that may be stale"
        );
    }

    #[test]
    fn missed_changes_drop_everything() {
        let (changes, cache) = cache();
        cache.insert(caller("l1", "m1"), cache.generation());

        for index in 0..10 {
            changes
                .send(change("Observation", &index.to_string()))
                .unwrap();
        }
        assert!(
            cache.get("l1").is_none(),
            "a lagging feed may have lost changes"
        );
    }
}
