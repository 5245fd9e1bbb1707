//! The SQL of a search: one WHERE clause for the request's filters, the project and the
//! access restriction, used by both the page query and the count query. Each filter becomes
//! a condition with the meaning that `medgate_fhir::search::matches` gives it in memory.

use medgate_fhir::search::{
    DateMatch, Filter, FilterOp, NumberMatch, Prefix, Restriction, SearchRequest, SortColumn,
    SortKey, TokenMatch,
};

use crate::sql::{Bind, Statement};

/// Builds the SELECT of one page of a search. `insertion_order` is the back end's column that
/// grows with each inserted resource row, which orders resources written in the same
/// millisecond.
pub(crate) fn select_search(
    request: &SearchRequest,
    project_id: Option<&str>,
    restriction: Option<&Restriction>,
    insertion_order: &str,
) -> Statement {
    let mut statement = Statement::new();
    let condition = where_clause(request, project_id, restriction, &mut statement);
    let order = order_by(&request.sort, insertion_order, &mut statement);
    let limit = statement.bind(Bind::Int(i64::from(request.count)));
    let offset = statement.bind(Bind::Int(i64::from(request.offset)));
    statement.sql = format!(
        "SELECT r.content FROM resources r WHERE {condition} ORDER BY {order} \
        LIMIT {limit} OFFSET {offset}"
    );
    statement
}

/// Builds the COUNT of every resource a search matches, ignoring paging (`_total`).
pub(crate) fn count_search(
    request: &SearchRequest,
    project_id: Option<&str>,
    restriction: Option<&Restriction>,
) -> Statement {
    let mut statement = Statement::new();
    let condition = where_clause(request, project_id, restriction, &mut statement);
    statement.sql = format!("SELECT COUNT(*) FROM resources r WHERE {condition}");
    statement
}

/// Builds the condition that every filter of the request matches and, when there is a
/// restriction, that every filter of at least one of its groups matches too.
fn where_clause(
    request: &SearchRequest,
    project_id: Option<&str>,
    restriction: Option<&Restriction>,
    statement: &mut Statement,
) -> String {
    let resource_type = statement.bind_text(request.resource_type.clone());
    let mut conditions = vec![format!(
        "r.resource_type = {resource_type} AND r.deleted = FALSE"
    )];
    if let Some(project_id) = project_id {
        let placeholder = statement.bind_text(project_id);
        conditions.push(format!("r.project_id = {placeholder}"));
    }
    for filter in &request.filters {
        conditions.push(filter_condition(filter, &resource_type, statement));
    }
    match restriction {
        None | Some(Restriction::Everything) => {}
        Some(Restriction::Nothing) => conditions.push("1 = 0".to_string()),
        Some(Restriction::AnyOf(groups)) => {
            let alternatives: Vec<String> = groups
                .iter()
                .map(|group| {
                    let group_conditions: Vec<String> = group
                        .iter()
                        .map(|filter| filter_condition(filter, &resource_type, statement))
                        .collect();
                    if group_conditions.is_empty() {
                        "1 = 1".to_string()
                    } else {
                        format!("({})", group_conditions.join(" AND "))
                    }
                })
                .collect();
            conditions.push(or_all(alternatives));
        }
    }
    conditions.join(" AND ")
}

/// Joins alternatives with OR; no alternative at all matches nothing.
fn or_all(alternatives: Vec<String>) -> String {
    if alternatives.is_empty() {
        "1 = 0".to_string()
    } else {
        format!("({})", alternatives.join(" OR "))
    }
}

/// Builds the condition of one filter: a condition on a column of the resource row for
/// `_id`, `_project` and `_lastUpdated`, an EXISTS sub-query over the index rows otherwise.
/// `resource_type` is the placeholder already bound to the searched type.
pub(crate) fn filter_condition(
    filter: &Filter,
    resource_type: &str,
    statement: &mut Statement,
) -> String {
    match filter.code.as_str() {
        "_id" => column_condition("r.id", &filter.op, statement),
        "_project" => column_condition("r.project_id", &filter.op, statement),
        "_lastUpdated" => last_updated_condition(&filter.op, statement),
        code => index_condition(code, resource_type, &filter.op, statement),
    }
}

/// Only equality, its negation and `:missing` apply to a column; anything else matches
/// nothing. A NULL project is "not equal" to every value, as in memory.
fn column_condition(column: &str, op: &FilterOp, statement: &mut Statement) -> String {
    match op {
        FilterOp::Equals(values) if !values.is_empty() => {
            let placeholders: Vec<String> = values
                .iter()
                .map(|value| statement.bind_text(value.clone()))
                .collect();
            format!("{column} IN ({})", placeholders.join(", "))
        }
        FilterOp::Not(inner) => format!(
            "NOT COALESCE(({}), FALSE)",
            column_condition(column, inner, statement)
        ),
        FilterOp::Missing(true) => format!("{column} IS NULL"),
        FilterOp::Missing(false) => format!("{column} IS NOT NULL"),
        _ => "1 = 0".to_string(),
    }
}

/// `_lastUpdated` compares the resource's instant as a range of one instant.
fn last_updated_condition(op: &FilterOp, statement: &mut Statement) -> String {
    match op {
        FilterOp::Date(alternatives) => or_all(
            alternatives
                .iter()
                .map(|alternative| {
                    date_condition(alternative, "r.last_updated", "r.last_updated", statement)
                })
                .collect(),
        ),
        FilterOp::Missing(false) => "1 = 1".to_string(),
        _ => "1 = 0".to_string(),
    }
}

/// Builds the condition on the index rows of one parameter. A positive condition is an
/// uncorrelated `r.id IN (…)` sub-query, so both databases can start from the index rows that
/// match and look the resources up by primary key, instead of probing the index once per
/// resource of the type. Negations and `:missing=true` stay correlated `NOT EXISTS`.
fn index_condition(
    code: &str,
    resource_type: &str,
    op: &FilterOp,
    statement: &mut Statement,
) -> String {
    let code = statement.bind_text(code);
    let index_match = format!(
        "SELECT 1 FROM search_index s WHERE s.resource_type = r.resource_type \
        AND s.resource_id = r.id AND s.code = {code}"
    );
    let index_rows = format!(
        "SELECT s.resource_id FROM search_index s WHERE s.resource_type = {resource_type} \
        AND s.code = {code}"
    );
    match op {
        FilterOp::Missing(true) => format!("NOT EXISTS ({index_match})"),
        FilterOp::Missing(false) => format!("r.id IN ({index_rows})"),
        FilterOp::Not(inner) => format!(
            "NOT EXISTS ({index_match} AND {})",
            value_condition(inner, statement)
        ),
        op => format!(
            "r.id IN ({index_rows} AND {})",
            value_condition(op, statement)
        ),
    }
}

/// Builds the condition on one index row `s` for an operation that looks at single values.
fn value_condition(op: &FilterOp, statement: &mut Statement) -> String {
    let alternatives: Vec<String> = match op {
        FilterOp::Equals(values) => values
            .iter()
            .map(|value| format!("s.value = {}", statement.bind_text(value.clone())))
            .collect(),
        FilterOp::StartsWith(prefixes) => prefixes
            .iter()
            .map(|prefix| like("s.value", &format!("{}%", like_escape(prefix)), statement))
            .collect(),
        FilterOp::Contains(parts) => parts
            .iter()
            .map(|part| like("s.value", &format!("%{}%", like_escape(part)), statement))
            .collect(),
        FilterOp::Exact(texts) => texts
            .iter()
            .map(|text| format!("s.text = {}", statement.bind_text(text.clone())))
            .collect(),
        FilterOp::Token(tokens) => tokens
            .iter()
            .map(|token| token_condition(token, statement))
            .collect(),
        FilterOp::Text(prefixes) => prefixes
            .iter()
            .map(|prefix| like("s.text", &format!("{}%", like_escape(prefix)), statement))
            .collect(),
        FilterOp::Date(alternatives) => alternatives
            .iter()
            .map(|alternative| date_condition(alternative, "s.low", "s.high", statement))
            .collect(),
        FilterOp::Number(alternatives) => alternatives
            .iter()
            .map(|alternative| number_condition(alternative, statement))
            .collect(),
        // Only top-level filters negate or test for absence; nested, they match nothing.
        FilterOp::Not(_) | FilterOp::Missing(_) => Vec::new(),
    };
    or_all(alternatives)
}

fn like(column: &str, pattern: &str, statement: &mut Statement) -> String {
    let placeholder = statement.bind_text(pattern);
    format!("{column} LIKE {placeholder} ESCAPE '\\'")
}

/// Escapes `%`, `_` and `\` so that `LIKE … ESCAPE '\'` matches them literally. Both sides
/// are lower-cased already, so SQLite's case-insensitive LIKE and PostgreSQL's case-sensitive
/// one agree.
fn like_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        if matches!(character, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(character);
    }
    escaped
}

fn token_condition(token: &TokenMatch, statement: &mut Statement) -> String {
    match token {
        TokenMatch::Code(code) => format!("s.value = {}", statement.bind_text(code.clone())),
        TokenMatch::SystemCode { system, code } => format!(
            "(s.system = {} AND s.value = {})",
            statement.bind_text(system.clone()),
            statement.bind_text(code.clone())
        ),
        TokenMatch::CodeWithoutSystem(code) => format!(
            "(s.system IS NULL AND s.value = {})",
            statement.bind_text(code.clone())
        ),
        TokenMatch::System(system) => {
            format!("s.system = {}", statement.bind_text(system.clone()))
        }
    }
}

/// Builds the SQL form of [`DateMatch::matches`] over the range `[low, high]` of two columns.
/// Every use of a searched bound gets its own placeholder.
fn date_condition(date: &DateMatch, low: &str, high: &str, statement: &mut Statement) -> String {
    let search_low = || Bind::Text(date.low.clone());
    let search_high = || Bind::Text(date.high.clone());
    let contained = |statement: &mut Statement| {
        let (from, to) = (statement.bind(search_low()), statement.bind(search_high()));
        format!("({low} >= {from} AND {high} <= {to})")
    };
    match date.prefix {
        Prefix::Eq => contained(statement),
        Prefix::Ne => format!("NOT {}", contained(statement)),
        Prefix::Gt => format!("{high} > {}", statement.bind(search_high())),
        Prefix::Lt => format!("{low} < {}", statement.bind(Bind::Text(date.low.clone()))),
        Prefix::Ge => {
            let after = statement.bind(search_high());
            format!("({high} > {after} OR {})", contained(statement))
        }
        Prefix::Le => {
            let before = statement.bind(Bind::Text(date.low.clone()));
            format!("({low} < {before} OR {})", contained(statement))
        }
        Prefix::Sa => format!("{low} > {}", statement.bind(search_high())),
        Prefix::Eb => format!("{high} < {}", statement.bind(Bind::Text(date.low.clone()))),
    }
}

/// Builds the SQL form of [`NumberMatch::matches`] over `s.number`.
fn number_condition(number: &NumberMatch, statement: &mut Statement) -> String {
    let mut value = |bound: f64| statement.bind(Bind::Float(bound));
    match number.prefix {
        Prefix::Eq => {
            let (low, high) = (value(number.low), value(number.high));
            format!("(s.number >= {low} AND s.number < {high})")
        }
        Prefix::Ne => {
            let (low, high) = (value(number.low), value(number.high));
            format!("(s.number < {low} OR s.number >= {high})")
        }
        Prefix::Gt | Prefix::Sa => format!("s.number > {}", value(number.value)),
        Prefix::Lt | Prefix::Eb => format!("s.number < {}", value(number.value)),
        Prefix::Ge => format!("s.number >= {}", value(number.value)),
        Prefix::Le => format!("s.number <= {}", value(number.value)),
    }
}

/// Builds the ORDER BY of a search: the `_sort` keys, then the oldest `lastUpdated` and the
/// insertion order, so that pages never overlap and resources written together keep the
/// order they were created in. A parameter key sorts ascending by each resource's smallest
/// value and descending by its largest, and resources without a value come last either way.
///
/// NOTE: PostgreSQL sorts text by the database's collation and SQLite byte by byte, so
/// strings that differ in more than lower-case letters and digits may sort differently.
fn order_by(keys: &[SortKey], insertion_order: &str, statement: &mut Statement) -> String {
    let mut terms = Vec::new();
    for key in keys {
        let direction = if key.descending { "DESC" } else { "ASC" };
        let column = match key.column {
            SortColumn::Id => {
                terms.push(format!("r.id {direction}"));
                continue;
            }
            SortColumn::LastUpdated => {
                terms.push(format!("r.last_updated {direction}"));
                continue;
            }
            SortColumn::Value => "s.value",
            SortColumn::Number => "s.number",
            SortColumn::DateRange if key.descending => "s.high",
            SortColumn::DateRange => "s.low",
        };
        let aggregate = if key.descending { "MAX" } else { "MIN" };
        let code = statement.bind_text(key.code.clone());
        terms.push(format!(
            "(SELECT {aggregate}({column}) FROM search_index s \
            WHERE s.resource_type = r.resource_type AND s.resource_id = r.id AND s.code = {code}) \
            {direction} NULLS LAST"
        ));
    }
    terms.push("r.last_updated".to_string());
    terms.push(insertion_order.to_string());
    terms.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_escape_wildcards() {
        assert_eq!(like_escape("a%b_c\\"), "a\\%b\\_c\\\\");
    }

    #[test]
    fn search_binds_in_placeholder_order() {
        let request = SearchRequest::new("User")
            .filter("email", "a@b.c")
            .missing("project", true);
        let statement = select_search(&request, Some("p1"), None, "r.seq");
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
        let statement = select_search(&request, None, Some(&restriction), "r.seq");
        assert!(
            statement.sql.contains(" AND ((r.id IN ("),
            "{}",
            statement.sql
        );
        assert!(statement.sql.contains(" OR 1 = 1)"), "{}", statement.sql);
        let nothing = select_search(&request, None, Some(&Restriction::Nothing), "r.seq");
        assert!(nothing.sql.contains("AND 1 = 0"));
        let no_groups = count_search(&request, None, Some(&Restriction::AnyOf(Vec::new())));
        assert!(no_groups.sql.ends_with("AND 1 = 0"), "{}", no_groups.sql);
    }

    #[test]
    fn sort_keys_precede_the_default_order() {
        let mut request = SearchRequest::new("Patient");
        request.sort = vec![
            SortKey {
                code: "birthdate".to_string(),
                descending: true,
                column: SortColumn::DateRange,
            },
            SortKey {
                code: "_id".to_string(),
                descending: false,
                column: SortColumn::Id,
            },
        ];
        let statement = select_search(&request, None, None, "r.seq");
        assert!(
            statement.sql.contains("MAX(s.high)") && statement.sql.contains("DESC NULLS LAST"),
            "{}",
            statement.sql
        );
        assert!(
            statement
                .sql
                .contains("r.id ASC, r.last_updated, r.seq LIMIT"),
            "{}",
            statement.sql
        );
    }
}
