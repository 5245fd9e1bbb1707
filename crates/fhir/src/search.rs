//! Search parameters for the resource types medgate stores today, the values they index, and
//! the parser that turns a query string into filters a store can run.
//!
//! Values are extracted at write time (`index_values`) into an index table, so a search is an
//! indexed look-up and never a scan of JSON documents. String values are stored lower-cased
//! because FHIR string search is case-insensitive and matches on prefix (FHIR R4 §3.1.1.4.7).

use serde_json::Value;

/// Resource types the server accepts today.
pub const SUPPORTED_TYPES: &[&str] = &[
    "AccessPolicy",
    "ClientApplication",
    "JsonWebKey",
    "Login",
    "Patient",
    "Practitioner",
    "Project",
    "ProjectMembership",
    "RelatedPerson",
    "User",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// Case-insensitive prefix match, `:exact` for equality.
    String,
    /// Exact match on `code` or `system|code`.
    Token,
    /// Exact match on `Type/id`.
    Reference,
}

/// One search parameter: its code, its kind, and the JSON paths whose values it indexes.
struct ParamDef {
    resource_types: &'static [&'static str],
    code: &'static str,
    kind: ParamKind,
    paths: &'static [&'static str],
}

const PERSON_TYPES: &[&str] = &["Patient", "Practitioner", "RelatedPerson"];

/// Paths are dot-separated; arrays are walked through at every step.
const PARAMS: &[ParamDef] = &[
    ParamDef {
        resource_types: &["User"],
        code: "email",
        kind: ParamKind::Token,
        paths: &["email"],
    },
    ParamDef {
        resource_types: &["User"],
        code: "project",
        kind: ParamKind::Reference,
        paths: &["project"],
    },
    ParamDef {
        resource_types: &["User"],
        code: "external-id",
        kind: ParamKind::Token,
        paths: &["externalId"],
    },
    ParamDef {
        resource_types: &["ProjectMembership"],
        code: "user",
        kind: ParamKind::Reference,
        paths: &["user"],
    },
    ParamDef {
        resource_types: &["ProjectMembership"],
        code: "project",
        kind: ParamKind::Reference,
        paths: &["project"],
    },
    ParamDef {
        resource_types: &["ProjectMembership"],
        code: "profile",
        kind: ParamKind::Reference,
        paths: &["profile"],
    },
    ParamDef {
        resource_types: &["ProjectMembership"],
        code: "external-id",
        kind: ParamKind::Token,
        paths: &["externalId"],
    },
    ParamDef {
        resource_types: &["ProjectMembership"],
        code: "access-policy",
        kind: ParamKind::Reference,
        paths: &["accessPolicy", "access.policy"],
    },
    ParamDef {
        resource_types: &["Login"],
        code: "user",
        kind: ParamKind::Reference,
        paths: &["user"],
    },
    ParamDef {
        resource_types: &["Login"],
        code: "code-hash",
        kind: ParamKind::Token,
        paths: &["codeHash"],
    },
    ParamDef {
        resource_types: &["Login"],
        code: "cookie-hash",
        kind: ParamKind::Token,
        paths: &["cookieHash"],
    },
    ParamDef {
        resource_types: &["JsonWebKey"],
        code: "active",
        kind: ParamKind::Token,
        paths: &["active"],
    },
    ParamDef {
        resource_types: &["ClientApplication", "Project", "AccessPolicy"],
        code: "name",
        kind: ParamKind::String,
        paths: &["name"],
    },
    ParamDef {
        resource_types: &["Project"],
        code: "owner",
        kind: ParamKind::Reference,
        paths: &["owner"],
    },
    ParamDef {
        resource_types: PERSON_TYPES,
        code: "name",
        kind: ParamKind::String,
        paths: &["name.given", "name.family", "name.text"],
    },
    ParamDef {
        resource_types: PERSON_TYPES,
        code: "family",
        kind: ParamKind::String,
        paths: &["name.family"],
    },
    ParamDef {
        resource_types: PERSON_TYPES,
        code: "given",
        kind: ParamKind::String,
        paths: &["name.given"],
    },
    ParamDef {
        resource_types: PERSON_TYPES,
        code: "identifier",
        kind: ParamKind::Token,
        paths: &["identifier"],
    },
    ParamDef {
        resource_types: PERSON_TYPES,
        code: "telecom",
        kind: ParamKind::Token,
        paths: &["telecom"],
    },
    ParamDef {
        resource_types: PERSON_TYPES,
        code: "email",
        kind: ParamKind::Token,
        paths: &["telecom"],
    },
    ParamDef {
        resource_types: PERSON_TYPES,
        code: "gender",
        kind: ParamKind::Token,
        paths: &["gender"],
    },
    ParamDef {
        resource_types: PERSON_TYPES,
        code: "birthdate",
        kind: ParamKind::Token,
        paths: &["birthDate"],
    },
    ParamDef {
        resource_types: &["RelatedPerson"],
        code: "patient",
        kind: ParamKind::Reference,
        paths: &["patient"],
    },
];

fn find_param(resource_type: &str, code: &str) -> Option<&'static ParamDef> {
    PARAMS
        .iter()
        .find(|param| param.code == code && param.resource_types.contains(&resource_type))
}

/// One indexed value of one search parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexValue {
    pub code: &'static str,
    pub value: String,
}

/// Extracts every indexed search value of `resource`.
pub fn index_values(resource: &Value) -> Vec<IndexValue> {
    let Some(resource_type) = resource.get("resourceType").and_then(Value::as_str) else {
        return Vec::new();
    };
    let mut values = Vec::new();
    for param in PARAMS
        .iter()
        .filter(|param| param.resource_types.contains(&resource_type))
    {
        for path in param.paths {
            let mut found = Vec::new();
            collect_path(resource, path, &mut found);
            for node in found {
                for value in node_values(param, node) {
                    let entry = IndexValue {
                        code: param.code,
                        value,
                    };
                    if !values.contains(&entry) {
                        values.push(entry);
                    }
                }
            }
        }
    }
    values
}

fn collect_path<'a>(node: &'a Value, path: &str, out: &mut Vec<&'a Value>) {
    if let Value::Array(items) = node {
        for item in items {
            collect_path(item, path, out);
        }
        return;
    }
    match path.split_once('.') {
        None => match node.get(path) {
            Some(Value::Array(items)) => out.extend(items.iter()),
            Some(value) => out.push(value),
            None => {}
        },
        Some((head, rest)) => {
            if let Some(child) = node.get(head) {
                collect_path(child, rest, out);
            }
        }
    }
}

/// Turns one JSON node into the index strings of a parameter of the given kind.
fn node_values(param: &ParamDef, node: &Value) -> Vec<String> {
    match (param.kind, node) {
        (ParamKind::String, Value::String(text)) => vec![text.to_lowercase()],
        (ParamKind::Reference, Value::Object(object)) => object
            .get("reference")
            .and_then(Value::as_str)
            .map(|reference| vec![reference.to_string()])
            .unwrap_or_default(),
        (ParamKind::Token, Value::String(code)) if param.code == "email" => {
            vec![code.to_lowercase()]
        }
        (ParamKind::Token, Value::String(code)) => vec![code.clone()],
        (ParamKind::Token, Value::Bool(flag)) => vec![flag.to_string()],
        (ParamKind::Token, Value::Object(object)) => token_values(param, object),
        _ => Vec::new(),
    }
}

/// Identifier and ContactPoint values: `value` and `system|value`. The `email` parameter keeps
/// only ContactPoints whose system is `email`, lower-cased, because email matching is
/// case-insensitive throughout medgate.
fn token_values(param: &ParamDef, object: &serde_json::Map<String, Value>) -> Vec<String> {
    let Some(value) = object.get("value").and_then(Value::as_str) else {
        return Vec::new();
    };
    let system = object.get("system").and_then(Value::as_str);
    if param.code == "email" {
        return match system {
            Some("email") => vec![value.to_lowercase()],
            _ => Vec::new(),
        };
    }
    let mut values = vec![value.to_string()];
    if let Some(system) = system {
        values.push(format!("{system}|{value}"));
    }
    values
}

/// How a filter compares a parameter's indexed values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterOp {
    /// Any of the given values matches (a comma-separated list means OR).
    Equals(Vec<String>),
    /// Any indexed value starts with one of the given lower-cased prefixes.
    StartsWith(Vec<String>),
    /// `:missing=true` (no value indexed) or `:missing=false`.
    Missing(bool),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// The parameter code, or `_id` for the resource id.
    pub code: String,
    pub op: FilterOp,
}

/// Which resources a caller may see, as an access policy computes it: everything, nothing,
/// or the resources that match every filter of at least one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restriction {
    Everything,
    Nothing,
    AnyOf(Vec<Vec<Filter>>),
}

/// Checks in memory whether a resource matches every filter, with the same meaning as the
/// store's SQL search over the values of [`index_values`]. Access checks use it on versions
/// that are not stored yet.
pub fn matches(resource: &Value, filters: &[Filter]) -> bool {
    let values = index_values(resource);
    let id = resource
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    filters.iter().all(|filter| {
        if filter.code == "_id" {
            return match &filter.op {
                FilterOp::Equals(ids) => ids.iter().any(|candidate| candidate == id),
                _ => true,
            };
        }
        let mut indexed = values
            .iter()
            .filter(|value| value.code == filter.code)
            .map(|value| value.value.as_str());
        match &filter.op {
            FilterOp::Missing(missing) => indexed.next().is_none() == *missing,
            FilterOp::Equals(wanted) => {
                indexed.any(|value| wanted.iter().any(|candidate| candidate == value))
            }
            FilterOp::StartsWith(prefixes) => indexed.any(|value| {
                prefixes
                    .iter()
                    .any(|prefix| value.starts_with(prefix.as_str()))
            }),
        }
    })
}

/// A parsed search request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchRequest {
    pub resource_type: String,
    pub filters: Vec<Filter>,
    pub count: u32,
    pub offset: u32,
}

pub const DEFAULT_COUNT: u32 = 20;
pub const MAX_COUNT: u32 = 1000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SearchError {
    #[error("Unknown resource type: {0}")]
    UnknownType(String),
    #[error("Unknown search parameter: {0}")]
    UnknownParameter(String),
    #[error("Unsupported search modifier: {0}")]
    UnsupportedModifier(String),
    #[error("Invalid value for {param}: {value}")]
    InvalidValue { param: String, value: String },
}

impl SearchRequest {
    /// Builds a request with no filters and the default page size.
    pub fn new(resource_type: &str) -> Self {
        Self {
            resource_type: resource_type.to_string(),
            filters: Vec::new(),
            count: DEFAULT_COUNT,
            offset: 0,
        }
    }

    pub fn filter(mut self, code: &str, value: &str) -> Self {
        self.filters.push(Filter {
            code: code.to_string(),
            op: FilterOp::Equals(vec![value.to_string()]),
        });
        self
    }

    pub fn missing(mut self, code: &str, missing: bool) -> Self {
        self.filters.push(Filter {
            code: code.to_string(),
            op: FilterOp::Missing(missing),
        });
        self
    }

    pub fn count(mut self, count: u32) -> Self {
        self.count = count;
        self
    }

    /// Parses decoded query pairs such as `name=smith&_count=10`.
    pub fn parse(resource_type: &str, pairs: &[(String, String)]) -> Result<Self, SearchError> {
        if !SUPPORTED_TYPES.contains(&resource_type) {
            return Err(SearchError::UnknownType(resource_type.to_string()));
        }
        let mut request = Self::new(resource_type);
        for (key, value) in pairs {
            let (code, modifier) = match key.split_once(':') {
                Some((code, modifier)) => (code, Some(modifier)),
                None => (key.as_str(), None),
            };
            match code {
                "_count" => request.count = parse_number(key, value)?.min(MAX_COUNT),
                "_offset" => request.offset = parse_number(key, value)?,
                // Formatting and summary hints do not change which resources match.
                "_format" | "_pretty" | "_total" | "_summary" | "_sort" => {}
                "_id" => {
                    if modifier.is_some() {
                        return Err(SearchError::UnsupportedModifier(key.clone()));
                    }
                    request.filters.push(Filter {
                        code: "_id".to_string(),
                        op: FilterOp::Equals(split_values(value)),
                    });
                }
                _ => request
                    .filters
                    .push(parse_filter(resource_type, key, code, modifier, value)?),
            }
        }
        Ok(request)
    }
}

fn parse_number(key: &str, value: &str) -> Result<u32, SearchError> {
    value.parse().map_err(|_| SearchError::InvalidValue {
        param: key.to_string(),
        value: value.to_string(),
    })
}

fn split_values(value: &str) -> Vec<String> {
    value.split(',').map(str::to_string).collect()
}

fn parse_filter(
    resource_type: &str,
    key: &str,
    code: &str,
    modifier: Option<&str>,
    value: &str,
) -> Result<Filter, SearchError> {
    let param = find_param(resource_type, code)
        .ok_or_else(|| SearchError::UnknownParameter(code.to_string()))?;
    let op = match (modifier, param.kind) {
        (Some("missing"), _) => match value {
            "true" => FilterOp::Missing(true),
            "false" => FilterOp::Missing(false),
            _ => {
                return Err(SearchError::InvalidValue {
                    param: key.to_string(),
                    value: value.to_string(),
                });
            }
        },
        (None, ParamKind::String) => FilterOp::StartsWith(split_values(&value.to_lowercase())),
        (Some("exact"), ParamKind::String) => FilterOp::Equals(split_values(&value.to_lowercase())),
        (None, ParamKind::Token) if code == "email" => {
            FilterOp::Equals(split_values(&value.to_lowercase()))
        }
        (None, ParamKind::Token | ParamKind::Reference) => FilterOp::Equals(split_values(value)),
        (Some(_), _) => return Err(SearchError::UnsupportedModifier(key.to_string())),
    };
    Ok(Filter {
        code: param.code.to_string(),
        op,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn index_practitioner_names_and_email() {
        let resource = json!({"resourceType": "Practitioner", "name": [{"given": ["Alice"], "family": "Smith"}],
            "telecom": [{"system": "email", "value": "Alice@Example.com"}]});
        let values = index_values(&resource);
        assert!(values.contains(&IndexValue {
            code: "name",
            value: "alice".into()
        }));
        assert!(values.contains(&IndexValue {
            code: "family",
            value: "smith".into()
        }));
        assert!(values.contains(&IndexValue {
            code: "email",
            value: "alice@example.com".into()
        }));
        assert!(values.contains(&IndexValue {
            code: "telecom",
            value: "email|Alice@Example.com".into()
        }));
    }

    #[test]
    fn index_membership_references() {
        let resource = json!({"resourceType": "ProjectMembership", "user": {"reference": "User/1"},
            "project": {"reference": "Project/2"}, "profile": {"reference": "Practitioner/3"}});
        let codes: Vec<_> = index_values(&resource)
            .into_iter()
            .map(|v| (v.code, v.value))
            .collect();
        assert!(codes.contains(&("user", "User/1".to_string())));
        assert!(codes.contains(&("project", "Project/2".to_string())));
        assert!(codes.contains(&("profile", "Practitioner/3".to_string())));
    }

    #[test]
    fn parse_string_and_count() {
        let request =
            SearchRequest::parse("Patient", &pairs(&[("name", "Sm,Jo"), ("_count", "5000")]))
                .unwrap();
        assert_eq!(request.count, MAX_COUNT);
        assert_eq!(
            request.filters[0].op,
            FilterOp::StartsWith(vec!["sm".into(), "jo".into()])
        );
    }

    #[test]
    fn parse_rejects_unknown_parameter() {
        let error = SearchRequest::parse("Patient", &pairs(&[("shoe-size", "9")])).unwrap_err();
        assert_eq!(error, SearchError::UnknownParameter("shoe-size".into()));
    }

    #[test]
    fn parse_rejects_bad_count() {
        assert!(SearchRequest::parse("Patient", &pairs(&[("_count", "many")])).is_err());
    }

    #[test]
    fn parse_rejects_unknown_type() {
        assert!(matches!(
            SearchRequest::parse("Shoe", &[]),
            Err(SearchError::UnknownType(_))
        ));
    }

    #[test]
    fn in_memory_match() {
        let resource = json!({"resourceType": "Patient", "id": "p1", "name": [{"family": "Smith"}], "gender": "female"});
        let filters = |query: &[(&str, &str)]| {
            SearchRequest::parse("Patient", &pairs(query))
                .unwrap()
                .filters
        };
        assert!(matches(&resource, &filters(&[("name", "smi")])));
        assert!(matches(
            &resource,
            &filters(&[("gender", "female"), ("_id", "p0,p1")])
        ));
        assert!(!matches(&resource, &filters(&[("gender", "male")])));
        assert!(matches(
            &resource,
            &filters(&[("birthdate:missing", "true")])
        ));
        assert!(!matches(&resource, &filters(&[("_id", "p2")])));
    }

    #[test]
    fn parse_missing_modifier() {
        let request = SearchRequest::parse("User", &pairs(&[("project:missing", "true")])).unwrap();
        assert_eq!(request.filters[0].op, FilterOp::Missing(true));
    }
}
