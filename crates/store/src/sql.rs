//! SQL shared by both back ends. Every statement uses `$n` placeholders, which PostgreSQL and
//! SQLite both accept, so each statement is written once. The statements of a search are built
//! in `search_sql.rs`.

use medgate_fhir::search::{index_values, normalize_instant};
use serde_json::Value;

use crate::{StoreError, StoreResult};

/// The columns of the `resources` table taken from a resource's JSON.
pub(crate) struct Row {
    pub resource_type: String,
    pub id: String,
    pub version_id: String,
    pub last_updated: String,
    pub project_id: Option<String>,
    pub content: String,
}

impl Row {
    pub fn from_resource(resource: &Value) -> StoreResult<Self> {
        let text = |value: Option<&Value>, field: &'static str| {
            value
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or(StoreError::MissingField(field))
        };
        let meta = resource.get("meta");
        Ok(Self {
            resource_type: text(resource.get("resourceType"), "resourceType")?,
            id: text(resource.get("id"), "id")?,
            version_id: text(
                meta.and_then(|meta| meta.get("versionId")),
                "meta.versionId",
            )?,
            last_updated: normalized_instant(text(
                meta.and_then(|meta| meta.get("lastUpdated")),
                "meta.lastUpdated",
            )?),
            project_id: meta
                .and_then(|meta| meta.get("project"))
                .and_then(Value::as_str)
                .map(str::to_string),
            content: serde_json::to_string(resource)?,
        })
    }
}

/// Writes `meta.lastUpdated` in the fixed-width UTC form that `_lastUpdated` searches compare
/// as text. `content` keeps the value as the client sees it.
fn normalized_instant(text: String) -> String {
    normalize_instant(&text).unwrap_or(text)
}

pub(crate) const INSERT_RESOURCE: &str = "INSERT INTO resources \
    (resource_type, id, version_id, project_id, last_updated, deleted, content) \
    VALUES ($1, $2, $3, $4, $5, FALSE, $6)";

pub(crate) const INSERT_VERSION: &str = "INSERT INTO resource_versions \
    (version_id, resource_type, id, last_updated, deleted, content) VALUES ($1, $2, $3, $4, $5, $6)";

pub(crate) const UPDATE_RESOURCE: &str = "UPDATE resources SET version_id = $3, project_id = $4, \
    last_updated = $5, deleted = FALSE, content = $6 WHERE resource_type = $1 AND id = $2";

pub(crate) const UPDATE_RESOURCE_IF_VERSION: &str = "UPDATE resources SET version_id = $3, project_id = $4, \
    last_updated = $5, deleted = FALSE, content = $6 \
    WHERE resource_type = $1 AND id = $2 AND version_id = $7";

pub(crate) const DELETE_RESOURCE: &str = "UPDATE resources SET version_id = $3, last_updated = $4, \
    deleted = TRUE WHERE resource_type = $1 AND id = $2 AND deleted = FALSE";

pub(crate) const DELETE_INDEX: &str =
    "DELETE FROM search_index WHERE resource_type = $1 AND resource_id = $2";

pub(crate) const CLAIM: &str =
    "INSERT INTO claims (name, claimed_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING";

pub(crate) const INSERT_OUTBOX: &str = "INSERT INTO outbox \
    (id, kind, payload, attempts, due_at, created_at) VALUES ($1, $2, $3, 0, $4, $5)";

/// Claims due rows; each back end appends its row lock to the inner SELECT through `{lock}`.
pub(crate) const CLAIM_OUTBOX: &str = "UPDATE outbox SET due_at = $3, attempts = attempts + 1 \
    WHERE id IN (SELECT id FROM outbox WHERE kind = $1 AND abandoned = FALSE AND due_at <= $2 \
    ORDER BY due_at, id LIMIT $4{lock}) \
    RETURNING id, kind, payload, attempts, due_at, created_at";

pub(crate) const FINISH_OUTBOX: &str = "DELETE FROM outbox WHERE id = $1";

pub(crate) const RETRY_OUTBOX: &str =
    "UPDATE outbox SET due_at = $2, last_error = $3 WHERE id = $1 AND abandoned = FALSE";

pub(crate) const ABANDON_OUTBOX: &str =
    "UPDATE outbox SET abandoned = TRUE, payload = '{}', last_error = $2 WHERE id = $1";

/// Maximum number of changes a slow subscriber may fall behind before it receives a lag error.
pub(crate) const CHANGE_CAPACITY: usize = 4096;

/// Lists the resources a batch changes, as `(resource type, id)` pairs.
pub(crate) fn changed_keys(batch: &[crate::WriteOp]) -> Vec<(String, String)> {
    batch
        .iter()
        .filter_map(|op| match op {
            crate::WriteOp::Create(resource) | crate::WriteOp::Update { resource, .. } => Some((
                resource.get("resourceType")?.as_str()?.to_string(),
                resource.get("id")?.as_str()?.to_string(),
            )),
            crate::WriteOp::Delete {
                resource_type, id, ..
            } => Some((resource_type.clone(), id.clone())),
            crate::WriteOp::Claim { .. }
            | crate::WriteOp::Enqueue(_)
            | crate::WriteOp::AddToNotifications { .. } => None,
        })
        .collect()
}

/// Writes an outbox instant in the fixed-width form that compares correctly as text.
pub(crate) fn outbox_instant(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Reads back an instant written by [`outbox_instant`].
pub(crate) fn parse_outbox_instant(text: &str) -> StoreResult<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&chrono::Utc))
        .map_err(|_| StoreError::InvalidStoredValue("outbox instant"))
}

pub(crate) const SELECT_CURRENT: &str =
    "SELECT content, deleted FROM resources WHERE resource_type = $1 AND id = $2";

pub(crate) const SELECT_VERSION: &str = "SELECT content, deleted FROM resource_versions \
    WHERE resource_type = $1 AND id = $2 AND version_id = $3";

pub(crate) const SELECT_HISTORY: &str = "SELECT content FROM resource_versions \
    WHERE resource_type = $1 AND id = $2 AND deleted = FALSE ORDER BY seq DESC";

pub(crate) const SELECT_INDEX_VERSION: &str =
    "SELECT version FROM search_index_version WHERE id = 1";

pub(crate) const UPDATE_INDEX_VERSION: &str =
    "UPDATE search_index_version SET version = $1 WHERE id = 1";

/// The next batch of current resources after a `(resource_type, id)` key, for rebuilding the
/// index. Each back end appends its row lock, if it has one.
pub(crate) const SELECT_REINDEX_BATCH: &str = "SELECT resource_type, id, content FROM resources \
    WHERE deleted = FALSE AND (resource_type, id) > ($1, $2) ORDER BY resource_type, id LIMIT $3";

/// Creates the attempt row of an account unless it exists, so the next statement can lock it.
pub(crate) const INSERT_ATTEMPTS: &str = "INSERT INTO sign_in_attempts \
    (account, attempts, locks, locked_until, last_attempt_at) VALUES ($1, 0, 0, NULL, $2) \
    ON CONFLICT (account) DO NOTHING";

/// Reads the attempt row of an account. Each back end appends its row lock, if it has one.
pub(crate) const SELECT_ATTEMPTS: &str = "SELECT attempts, locks, locked_until, last_attempt_at \
    FROM sign_in_attempts WHERE account = $1";

pub(crate) const UPDATE_ATTEMPTS: &str = "UPDATE sign_in_attempts \
    SET attempts = $2, locks = $3, locked_until = $4, last_attempt_at = $5 WHERE account = $1";

pub(crate) const DELETE_ATTEMPTS: &str = "DELETE FROM sign_in_attempts WHERE account = $1";

/// A value bound to a placeholder of a built statement.
pub(crate) enum Bind {
    Text(String),
    OptionalText(Option<String>),
    Int(i64),
    Float(f64),
    OptionalFloat(Option<f64>),
}

/// A statement built at run time, with its values in placeholder order.
pub(crate) struct Statement {
    pub sql: String,
    pub binds: Vec<Bind>,
}

impl Statement {
    pub(crate) fn new() -> Self {
        Self {
            sql: String::new(),
            binds: Vec::new(),
        }
    }

    /// Adds a value and returns its placeholder.
    pub(crate) fn bind(&mut self, bind: Bind) -> String {
        self.binds.push(bind);
        format!("${}", self.binds.len())
    }

    pub(crate) fn bind_text(&mut self, text: impl Into<String>) -> String {
        self.bind(Bind::Text(text.into()))
    }
}

/// Index rows per INSERT. Nine values a row stay below SQLite's historical limit of 999
/// placeholders a statement.
const ROWS_PER_INSERT: usize = 100;

/// Builds the multi-row INSERTs of all search values of a resource, none when it has no
/// values.
pub(crate) fn insert_index(resource_type: &str, id: &str, resource: &Value) -> Vec<Statement> {
    let values = index_values(resource);
    let mut statements = Vec::new();
    for chunk in values.chunks(ROWS_PER_INSERT) {
        let mut statement = Statement::new();
        let mut rows = Vec::with_capacity(chunk.len());
        for value in chunk {
            let placeholders = [
                statement.bind_text(resource_type),
                statement.bind_text(id),
                statement.bind_text(value.code),
                statement.bind_text(value.value.clone()),
                statement.bind(Bind::OptionalText(value.system.clone())),
                statement.bind(Bind::OptionalText(value.text.clone())),
                statement.bind(Bind::OptionalText(value.low.clone())),
                statement.bind(Bind::OptionalText(value.high.clone())),
                statement.bind(Bind::OptionalFloat(value.number)),
            ];
            rows.push(format!("({})", placeholders.join(", ")));
        }
        statement.sql = format!(
            "INSERT INTO search_index \
            (resource_type, resource_id, code, value, system, text, low, high, number) VALUES {}",
            rows.join(", ")
        );
        statements.push(statement);
    }
    statements
}
