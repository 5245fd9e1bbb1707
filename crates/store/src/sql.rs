//! SQL shared by both back ends. Every statement uses `$n` placeholders, which PostgreSQL and
//! SQLite both accept, so each statement is written once.

use medgate_fhir::search::{Filter, FilterOp, Restriction, SearchRequest, index_values};
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
            last_updated: text(
                meta.and_then(|meta| meta.get("lastUpdated")),
                "meta.lastUpdated",
            )?,
            project_id: meta
                .and_then(|meta| meta.get("project"))
                .and_then(Value::as_str)
                .map(str::to_string),
            content: serde_json::to_string(resource)?,
        })
    }
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

pub(crate) const SELECT_CURRENT: &str =
    "SELECT content, deleted FROM resources WHERE resource_type = $1 AND id = $2";

pub(crate) const SELECT_VERSION: &str = "SELECT content, deleted FROM resource_versions \
    WHERE resource_type = $1 AND id = $2 AND version_id = $3";

pub(crate) const SELECT_HISTORY: &str = "SELECT content FROM resource_versions \
    WHERE resource_type = $1 AND id = $2 AND deleted = FALSE ORDER BY seq DESC";

/// A value bound to a placeholder of a built statement.
pub(crate) enum Bind {
    Text(String),
    Int(i64),
}

/// A statement built at run time, with its values in placeholder order.
pub(crate) struct Statement {
    pub sql: String,
    pub binds: Vec<Bind>,
}

impl Statement {
    fn new() -> Self {
        Self {
            sql: String::new(),
            binds: Vec::new(),
        }
    }

    fn bind(&mut self, bind: Bind) -> String {
        self.binds.push(bind);
        format!("${}", self.binds.len())
    }
}

/// One multi-row INSERT of all search values of a resource, or `None` when it has none.
pub(crate) fn insert_index(resource_type: &str, id: &str, resource: &Value) -> Option<Statement> {
    let values = index_values(resource);
    if values.is_empty() {
        return None;
    }
    let mut statement = Statement::new();
    let mut rows = Vec::with_capacity(values.len());
    for value in values {
        let row = format!(
            "({}, {}, {}, {})",
            statement.bind(Bind::Text(resource_type.to_string())),
            statement.bind(Bind::Text(id.to_string())),
            statement.bind(Bind::Text(value.code.to_string())),
            statement.bind(Bind::Text(value.value)),
        );
        rows.push(row);
    }
    statement.sql = format!(
        "INSERT INTO search_index (resource_type, resource_id, code, value) VALUES {}",
        rows.join(", ")
    );
    Some(statement)
}

/// Escapes `%`, `_` and `\` so a prefix is matched literally by `LIKE … ESCAPE '\'`.
fn like_prefix(prefix: &str) -> String {
    let mut escaped = String::with_capacity(prefix.len() + 1);
    for character in prefix.chars() {
        if matches!(character, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(character);
    }
    escaped.push('%');
    escaped
}

/// Builds the SQL condition of one filter: an EXISTS sub-query over the index table, or an
/// id list for `_id`.
fn filter_condition(filter: &Filter, statement: &mut Statement) -> String {
    if filter.code == "_id" {
        let FilterOp::Equals(ids) = &filter.op else {
            return "TRUE".to_string();
        };
        let placeholders: Vec<_> = ids
            .iter()
            .map(|id| statement.bind(Bind::Text(id.clone())))
            .collect();
        return format!("r.id IN ({})", placeholders.join(", "));
    }
    let code = statement.bind(Bind::Text(filter.code.clone()));
    let index_match = format!(
        "SELECT 1 FROM search_index s WHERE s.resource_type = r.resource_type \
        AND s.resource_id = r.id AND s.code = {code}"
    );
    match &filter.op {
        FilterOp::Missing(true) => format!("NOT EXISTS ({index_match})"),
        FilterOp::Missing(false) => format!("EXISTS ({index_match})"),
        FilterOp::Equals(values) => {
            let alternatives: Vec<_> = values
                .iter()
                .map(|value| format!("s.value = {}", statement.bind(Bind::Text(value.clone()))))
                .collect();
            format!("EXISTS ({index_match} AND ({}))", alternatives.join(" OR "))
        }
        FilterOp::StartsWith(prefixes) => {
            let alternatives: Vec<_> = prefixes
                .iter()
                .map(|prefix| {
                    let placeholder = statement.bind(Bind::Text(like_prefix(prefix)));
                    format!("s.value LIKE {placeholder} ESCAPE '\\'")
                })
                .collect();
            format!("EXISTS ({index_match} AND ({}))", alternatives.join(" OR "))
        }
    }
}

/// Builds the SELECT for a search: the request's filters must all match, and the
/// restriction, when there is one, must match too.
pub(crate) fn select_search(
    request: &SearchRequest,
    project_id: Option<&str>,
    restriction: Option<&Restriction>,
) -> Statement {
    let mut statement = Statement::new();
    let mut sql = format!(
        "SELECT r.content FROM resources r WHERE r.resource_type = {} AND r.deleted = FALSE",
        statement.bind(Bind::Text(request.resource_type.clone()))
    );
    if let Some(project_id) = project_id {
        let placeholder = statement.bind(Bind::Text(project_id.to_string()));
        sql.push_str(&format!(" AND r.project_id = {placeholder}"));
    }
    for filter in &request.filters {
        let condition = filter_condition(filter, &mut statement);
        sql.push_str(&format!(" AND {condition}"));
    }
    match restriction {
        None | Some(Restriction::Everything) => {}
        Some(Restriction::Nothing) => sql.push_str(" AND 1 = 0"),
        Some(Restriction::AnyOf(groups)) => {
            let alternatives: Vec<String> = groups
                .iter()
                .map(|group| {
                    let conditions: Vec<String> = group
                        .iter()
                        .map(|filter| filter_condition(filter, &mut statement))
                        .collect();
                    if conditions.is_empty() {
                        "1 = 1".to_string()
                    } else {
                        format!("({})", conditions.join(" AND "))
                    }
                })
                .collect();
            if alternatives.is_empty() {
                sql.push_str(" AND 1 = 0");
            } else {
                sql.push_str(&format!(" AND ({})", alternatives.join(" OR ")));
            }
        }
    }
    let limit = statement.bind(Bind::Int(i64::from(request.count)));
    let offset = statement.bind(Bind::Int(i64::from(request.offset)));
    sql.push_str(&format!(
        " ORDER BY r.last_updated, r.id LIMIT {limit} OFFSET {offset}"
    ));
    statement.sql = sql;
    statement
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_prefix_escapes_wildcards() {
        assert_eq!(like_prefix("a%b_c\\"), "a\\%b\\_c\\\\%");
    }

    #[test]
    fn search_binds_in_placeholder_order() {
        let request = SearchRequest::new("User")
            .filter("email", "a@b.c")
            .missing("project", true);
        let statement = select_search(&request, Some("p1"), None);
        assert_eq!(statement.binds.len(), 7);
        assert!(statement.sql.contains("r.project_id = $2"));
        assert!(statement.sql.contains("LIMIT $6 OFFSET $7"));
    }

    #[test]
    fn restriction_is_or_of_and_groups() {
        let request = SearchRequest::new("Patient");
        let group = SearchRequest::new("Patient")
            .filter("name", "a")
            .filter("gender", "x")
            .filters;
        let restriction = Restriction::AnyOf(vec![group, Vec::new()]);
        let statement = select_search(&request, None, Some(&restriction));
        assert!(statement.sql.contains(" AND ((EXISTS"), "{}", statement.sql);
        assert!(statement.sql.contains(" OR 1 = 1)"), "{}", statement.sql);
        let nothing = select_search(&request, None, Some(&Restriction::Nothing));
        assert!(nothing.sql.contains("AND 1 = 0"));
    }
}
