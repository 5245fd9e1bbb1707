//! The parser from decoded query pairs (`name=smith&_count=10`) to a [`SearchRequest`].

use super::definitions::{ParamKind, SUPPORTED_TYPES, SearchParam, find_param};
use super::filter::{Filter, FilterOp, TokenMatch};
use super::values::{
    TokenValue, ValueError, parse_date_match, parse_number_match, plain_alternatives,
    split_alternatives, split_token,
};
use super::{Include, MAX_COUNT, SearchError, SearchRequest, SortColumn, SortKey};

/// Result parameters that do not change which resources match or how they are ordered.
const IGNORED: &[&str] = &["_format", "_pretty", "_elements"];

/// Standard parameters medgate does not implement; naming them gets a clear error instead of
/// "unknown parameter".
const UNSUPPORTED: &[&str] = &[
    "_text",
    "_content",
    "_list",
    "_has",
    "_type",
    "_query",
    "_filter",
    "_contained",
    "_containedType",
];

impl SearchRequest {
    /// Parses decoded query pairs such as `name=smith&_count=10`. Every unknown parameter is
    /// named in one error.
    pub fn parse(resource_type: &str, pairs: &[(String, String)]) -> Result<Self, SearchError> {
        if !SUPPORTED_TYPES.contains(&resource_type) {
            return Err(SearchError::UnknownType(resource_type.to_string()));
        }
        let mut request = Self::new(resource_type);
        let mut unknown = Vec::new();
        for (key, value) in pairs {
            let (code, modifier) = match key.split_once(':') {
                Some((code, modifier)) => (code, Some(modifier)),
                None => (key.as_str(), None),
            };
            match code {
                "_count" => request.count = parse_count(key, value)?.min(MAX_COUNT),
                "_offset" => request.offset = parse_count(key, value)?,
                "_total" => request.total = parse_total(key, value)?,
                "_summary" => {
                    // `_summary=count` requests the total alone (FHIR R4 search.html#summary).
                    if value == "count" {
                        request.total = true;
                        request.count = 0;
                    }
                }
                "_sort" => request.sort = parse_sort(resource_type, key, value)?,
                "_include" => {
                    check_no_modifier(key, modifier)?;
                    for include in split_alternatives(value) {
                        let include = parse_include(key, &include)?;
                        if include.source_type != resource_type {
                            return Err(invalid(key, value));
                        }
                        request.includes.push(include);
                    }
                }
                "_revinclude" => {
                    check_no_modifier(key, modifier)?;
                    for include in split_alternatives(value) {
                        request.revincludes.push(parse_include(key, &include)?);
                    }
                }
                _ if IGNORED.contains(&code) => {}
                _ if UNSUPPORTED.contains(&code) || code.contains('.') => {
                    return Err(SearchError::UnsupportedParameter(key.clone()));
                }
                _ => match parse_filter(resource_type, key, code, modifier, value)? {
                    Some(filter) => request.filters.push(filter),
                    None => unknown.push(code.to_string()),
                },
            }
        }
        if !unknown.is_empty() {
            return Err(SearchError::UnknownParameters(unknown));
        }
        Ok(request)
    }
}

fn invalid(key: &str, value: &str) -> SearchError {
    SearchError::InvalidValue {
        param: key.to_string(),
        value: value.to_string(),
    }
}

fn check_no_modifier(key: &str, modifier: Option<&str>) -> Result<(), SearchError> {
    match modifier {
        None => Ok(()),
        Some(_) => Err(SearchError::UnsupportedModifier(key.to_string())),
    }
}

fn parse_count(key: &str, value: &str) -> Result<u32, SearchError> {
    value.parse().map_err(|_| invalid(key, value))
}

fn parse_total(key: &str, value: &str) -> Result<bool, SearchError> {
    match value {
        "none" => Ok(false),
        "estimate" | "accurate" => Ok(true),
        _ => Err(invalid(key, value)),
    }
}

/// Parses `_sort=a,-b`: `-` sorts that key in descending order.
fn parse_sort(resource_type: &str, key: &str, value: &str) -> Result<Vec<SortKey>, SearchError> {
    let mut keys = Vec::new();
    for item in value.split(',') {
        let (code, descending) = match item.strip_prefix('-') {
            Some(code) => (code, true),
            None => (item, false),
        };
        let column = match code {
            "_id" => SortColumn::Id,
            "_lastUpdated" => SortColumn::LastUpdated,
            _ => {
                let param = find_param(resource_type, code)
                    .ok_or_else(|| SearchError::UnknownParameters(vec![code.to_string()]))?;
                match param.kind {
                    ParamKind::String
                    | ParamKind::Token
                    | ParamKind::Reference
                    | ParamKind::Uri => SortColumn::Value,
                    ParamKind::Date => SortColumn::DateRange,
                    ParamKind::Number => SortColumn::Number,
                    kind => {
                        return Err(SearchError::UnsupportedType {
                            param: code.to_string(),
                            kind: kind.name(),
                        });
                    }
                }
            }
        };
        if code.is_empty() {
            return Err(invalid(key, value));
        }
        keys.push(SortKey {
            code: code.to_string(),
            descending,
            column,
        });
    }
    Ok(keys)
}

/// Parses `Source:param` or `Source:param:Target`, where `param` is a reference parameter of
/// `Source`.
fn parse_include(key: &str, value: &str) -> Result<Include, SearchError> {
    let parts: Vec<&str> = value.split(':').collect();
    let (source_type, code, target_type) = match parts.as_slice() {
        [source, code] => (*source, *code, None),
        [source, code, target] => (*source, *code, Some(*target)),
        _ => return Err(invalid(key, value)),
    };
    if !SUPPORTED_TYPES.contains(&source_type) {
        return Err(SearchError::UnknownType(source_type.to_string()));
    }
    if let Some(target) = target_type
        && !SUPPORTED_TYPES.contains(&target)
    {
        return Err(SearchError::UnknownType(target.to_string()));
    }
    let param = find_param(source_type, code)
        .ok_or_else(|| SearchError::UnknownParameters(vec![code.to_string()]))?;
    if param.kind != ParamKind::Reference {
        return Err(invalid(key, value));
    }
    Ok(Include {
        source_type: source_type.to_string(),
        param: code.to_string(),
        target_type: target_type.map(str::to_string),
    })
}

/// Parses one filter, or returns `None` for a parameter the type does not have.
fn parse_filter(
    resource_type: &str,
    key: &str,
    code: &str,
    modifier: Option<&str>,
    value: &str,
) -> Result<Option<Filter>, SearchError> {
    let filter = |op| {
        Ok(Some(Filter {
            code: code.to_string(),
            op,
        }))
    };
    if modifier == Some("missing") {
        return match value {
            "true" => filter(FilterOp::Missing(true)),
            "false" => filter(FilterOp::Missing(false)),
            _ => Err(invalid(key, value)),
        };
    }

    // Special parameters, kept in columns of the resource row or in `_compartment` rows.
    match code {
        "_id" | "_project" | "_compartment" => {
            // `_project` is matched against the bare project id and `_compartment` against
            // `Patient/<id>` references, so either form of a value works.
            let values = plain_alternatives(value)
                .into_iter()
                .map(|value| match code {
                    "_project" => value
                        .strip_prefix("Project/")
                        .map(str::to_string)
                        .unwrap_or(value),
                    "_compartment" if is_fhir_id(&value) => format!("Patient/{value}"),
                    _ => value,
                })
                .collect();
            return match modifier {
                None => filter(FilterOp::Equals(values)),
                Some("not") => filter(FilterOp::Not(Box::new(FilterOp::Equals(values)))),
                Some(_) => Err(SearchError::UnsupportedModifier(key.to_string())),
            };
        }
        "_lastUpdated" => {
            check_no_modifier(key, modifier)?;
            return filter(date_op(key, value)?);
        }
        _ => {}
    }

    let Some(param) = find_param(resource_type, code) else {
        return Ok(None);
    };
    if !param.kind.is_supported() {
        return Err(SearchError::UnsupportedType {
            param: code.to_string(),
            kind: param.kind.name(),
        });
    }
    let op = match (param.kind, modifier) {
        (ParamKind::String, None) => FilterOp::StartsWith(lower_alternatives(value)),
        (ParamKind::String, Some("contains")) => FilterOp::Contains(lower_alternatives(value)),
        (ParamKind::String, Some("exact")) => FilterOp::Exact(plain_alternatives(value)),
        (ParamKind::Token, None) => token_op(code, value),
        (ParamKind::Token, Some("not")) => FilterOp::Not(Box::new(token_op(code, value))),
        (ParamKind::Token, Some("text")) => FilterOp::Text(lower_alternatives(value)),
        (ParamKind::Reference, None) => FilterOp::Equals(reference_values(param, None, value)),
        (ParamKind::Reference, Some("not")) => FilterOp::Not(Box::new(FilterOp::Equals(
            reference_values(param, None, value),
        ))),
        (ParamKind::Reference, Some(target)) if SUPPORTED_TYPES.contains(&target) => {
            FilterOp::Equals(reference_values(param, Some(target), value))
        }
        (ParamKind::Uri, None) => FilterOp::Equals(plain_alternatives(value)),
        (ParamKind::Uri, Some("not")) => {
            FilterOp::Not(Box::new(FilterOp::Equals(plain_alternatives(value))))
        }
        (ParamKind::Date, None) => date_op(key, value)?,
        (ParamKind::Number, None) => number_op(key, value)?,
        _ => return Err(SearchError::UnsupportedModifier(key.to_string())),
    };
    filter(op)
}

fn lower_alternatives(value: &str) -> Vec<String> {
    plain_alternatives(&value.to_lowercase())
}

/// Token alternatives: plain codes become [`FilterOp::Equals`], and any with a system make
/// the whole filter a [`FilterOp::Token`]. Email addresses are lower-cased, as indexed.
fn token_op(code: &str, value: &str) -> FilterOp {
    let normalize = |text: String| {
        if code == "email" {
            text.to_lowercase()
        } else {
            text
        }
    };
    let alternatives: Vec<TokenValue> = split_alternatives(value)
        .iter()
        .map(|alternative| split_token(alternative))
        .collect();
    if alternatives
        .iter()
        .all(|alternative| matches!(alternative, TokenValue::Code(_)))
    {
        let codes = alternatives
            .into_iter()
            .filter_map(|alternative| match alternative {
                TokenValue::Code(code) => Some(normalize(code)),
                TokenValue::WithSystem(_) => None,
            })
            .collect();
        return FilterOp::Equals(codes);
    }
    let matches = alternatives
        .into_iter()
        .map(|alternative| match alternative {
            TokenValue::Code(code) => TokenMatch::Code(normalize(code)),
            TokenValue::WithSystem(TokenMatch::SystemCode { system, code }) => {
                TokenMatch::SystemCode {
                    system,
                    code: normalize(code),
                }
            }
            TokenValue::WithSystem(TokenMatch::CodeWithoutSystem(code)) => {
                TokenMatch::CodeWithoutSystem(normalize(code))
            }
            TokenValue::WithSystem(system) => system,
        })
        .collect();
    FilterOp::Token(matches)
}

/// Checks the FHIR `id` syntax: 1 to 64 letters, digits, `-` and `.` (FHIR R4
/// datatypes.html#id).
fn is_fhir_id(value: &str) -> bool {
    (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.'))
}

/// Reference alternatives as indexed: `Type/id` stays, and a bare id becomes `Type/id` for
/// each type the parameter may point to (or only `target`, from a `:Type` modifier). Any
/// other value, such as a URL or an access policy's `%patient` placeholder, stays as written.
fn reference_values(param: &SearchParam, target: Option<&str>, value: &str) -> Vec<String> {
    let mut references = Vec::new();
    for alternative in plain_alternatives(value) {
        if !is_fhir_id(&alternative) {
            references.push(alternative);
            continue;
        }
        match target {
            Some(target) => references.push(format!("{target}/{alternative}")),
            None if param.targets.is_empty() => references.push(alternative),
            None => {
                for target in &param.targets {
                    references.push(format!("{target}/{alternative}"));
                }
            }
        }
    }
    references
}

fn date_op(key: &str, value: &str) -> Result<FilterOp, SearchError> {
    let mut matches = Vec::new();
    for alternative in plain_alternatives(value) {
        matches.push(
            parse_date_match(&alternative)
                .map_err(|error| value_error(key, &alternative, error))?,
        );
    }
    Ok(FilterOp::Date(matches))
}

fn number_op(key: &str, value: &str) -> Result<FilterOp, SearchError> {
    let mut matches = Vec::new();
    for alternative in plain_alternatives(value) {
        matches.push(
            parse_number_match(&alternative)
                .map_err(|error| value_error(key, &alternative, error))?,
        );
    }
    Ok(FilterOp::Number(matches))
}

fn value_error(key: &str, value: &str, error: ValueError) -> SearchError {
    match error {
        ValueError::Invalid => invalid(key, value),
        ValueError::UnsupportedPrefix(prefix) => SearchError::UnsupportedPrefix {
            param: key.to_string(),
            prefix,
        },
    }
}
