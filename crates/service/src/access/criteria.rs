//! The `criteria` of a policy entry: a FHIR search over one type that the resources must
//! match. Policies may use only plain parameters, the `:not` and `:missing` modifiers, and
//! the special parameters `_id` and `_compartment`; chains, `_has` and result parameters
//! (`_count`, `_sort`, …) have no meaning for one resource and are rejected.
//!
//! Placeholders such as `%patient` or `%profile.id` are bound after the criteria are parsed
//! and replace whole or partial values of one filter, so a parameter value containing `&`
//! or `,` stays one value and cannot add parameters or alternatives.

#[cfg(test)]
use medgate_fhir::search::FilterOp;
use medgate_fhir::search::{Filter, SearchRequest};
use serde_json::{Map, Value};

use super::build::ParameterValue;

/// A parsed criteria string with its placeholder bindings.
#[derive(Debug, Clone, PartialEq)]
pub struct Criteria {
    /// The type before `?`, or `*` when the criteria apply to whichever type is searched.
    resource_type: String,
    /// The decoded query pairs, placeholders still in place.
    pairs: Vec<(String, String)>,
    bindings: Vec<(String, ParameterValue)>,
}

/// Special parameters a policy may use besides the type's own search parameters.
const ALLOWED_SPECIAL: &[&str] = &["_id", "_compartment"];

impl Criteria {
    /// Parses `Type?query`. `entry_type` is the entry's `resourceType`, which the criteria
    /// must repeat (or `*` for a `*` entry).
    pub fn parse(text: &str, entry_type: &str) -> Result<Self, String> {
        let Some((resource_type, query)) = text.split_once('?') else {
            return Err(format!(
                "criteria {text:?} must have the form {entry_type}?<search>"
            ));
        };
        if resource_type != entry_type {
            return Err(format!(
                "criteria {text:?} must start with {entry_type}?, the entry's resourceType"
            ));
        }
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        for (key, _) in &pairs {
            check_key(key).map_err(|reason| format!("criteria {text:?}: {reason}"))?;
        }
        Ok(Self {
            resource_type: resource_type.to_string(),
            pairs,
            bindings: Vec::new(),
        })
    }

    /// Parses the `?query` part of a SMART scope for a concrete type.
    pub fn from_scope_query(resource_type: &str, query: &str) -> Result<Self, String> {
        Self::parse(&format!("{resource_type}?{query}"), resource_type)
    }

    /// Binds the placeholders; later calls do not replace earlier bindings of one name.
    pub fn bind(mut self, bindings: &[(String, ParameterValue)]) -> Self {
        for (name, value) in bindings {
            if !self.bindings.iter().any(|(bound, _)| bound == name) {
                self.bindings.push((name.clone(), value.clone()));
            }
        }
        self
    }

    /// Retypes `*` criteria to a concrete type, as SMART scopes on `*` entries do.
    pub fn retyped(mut self, resource_type: &str) -> Self {
        if self.resource_type == "*" {
            self.resource_type = resource_type.to_string();
        }
        self
    }

    /// Returns the filters for resources of `resource_type`, placeholders replaced.
    pub fn filters(&self, resource_type: &str) -> Result<Vec<Filter>, String> {
        if self.resource_type != "*" && self.resource_type != resource_type {
            return Err(format!(
                "criteria for {} cannot apply to {resource_type}",
                self.resource_type
            ));
        }
        let request = SearchRequest::parse(resource_type, &self.pairs)
            .map_err(|error| format!("criteria {}: {error}", self.display()))?;
        let mut filters = request.filters;
        for filter in &mut filters {
            let lower_case = lowercases_values(resource_type, &self.pairs, &filter.code);
            self.substitute(filter, lower_case);
        }
        Ok(filters)
    }

    /// The FHIRPath variables of the bindings: each parameter's value as a string, a
    /// reference as `Type/id`.
    pub fn variables(bindings: &[(String, ParameterValue)]) -> Map<String, Value> {
        bindings
            .iter()
            .map(|(name, value)| (name.clone(), Value::String(value.full().to_string())))
            .collect()
    }

    /// The criteria as text with the bound values in place, for display only.
    pub fn display(&self) -> String {
        let mut serializer = url::form_urlencoded::Serializer::new(String::new());
        for (key, value) in &self.pairs {
            serializer.append_pair(key, &substitute_text(value, &self.bindings));
        }
        format!("{}?{}", self.resource_type, serializer.finish())
    }

    fn substitute(&self, filter: &mut Filter, lower_case: bool) {
        filter.op.for_each_text_mut(&mut |value: &mut String| {
            if value.contains('%') {
                let replaced = substitute_text(value, &self.bindings);
                *value = if lower_case {
                    replaced.to_lowercase()
                } else {
                    replaced
                };
            }
        });
    }
}

/// Checks whether the search parser lower-cases the values of a parameter, so that a
/// substituted value gets the same treatment as one written into the criteria.
fn lowercases_values(resource_type: &str, pairs: &[(String, String)], code: &str) -> bool {
    let Some((key, _)) = pairs
        .iter()
        .find(|(key, _)| key.split(':').next() == Some(code))
    else {
        return false;
    };
    let probe = [(key.clone(), "A".to_string())];
    let Ok(request) = SearchRequest::parse(resource_type, &probe) else {
        return false;
    };
    let mut lowered = false;
    for mut filter in request.filters {
        filter.op.for_each_text_mut(&mut |value: &mut String| {
            lowered |= value == "a";
        });
    }
    lowered
}

fn check_key(key: &str) -> Result<(), String> {
    let (code, modifier) = match key.split_once(':') {
        Some((code, modifier)) => (code, Some(modifier)),
        None => (key, None),
    };
    if code.contains('.') || modifier.is_some_and(|modifier| modifier.contains('.')) {
        return Err(format!("chained parameter {key} is not allowed"));
    }
    if code.starts_with('_') && !ALLOWED_SPECIAL.contains(&code) {
        return Err(format!(
            "parameter {key} is not allowed; only _id and _compartment may be used"
        ));
    }
    match modifier {
        None | Some("not") | Some("missing") => Ok(()),
        Some(other) => Err(format!(
            "modifier :{other} is not allowed; only :not and :missing may be used"
        )),
    }
}

/// Replaces each `%name.id` and `%name` in one value. Unknown names stay as written, so
/// they match nothing.
pub(super) fn substitute_text(text: &str, bindings: &[(String, ParameterValue)]) -> String {
    let mut output = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('%') {
        output.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let name_len = after
            .char_indices()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
            .map_or(after.len(), |(index, _)| index);
        let name = &after[..name_len];
        let binding = bindings
            .iter()
            .find(|(bound, _)| bound == name)
            .map(|(_, value)| value);
        match binding {
            Some(value) if name_len > 0 => {
                let tail = &after[name_len..];
                if let Some(tail) = tail.strip_prefix(".id") {
                    output.push_str(value.id());
                    rest = tail;
                } else {
                    output.push_str(value.full());
                    rest = tail;
                }
            }
            _ => {
                output.push('%');
                rest = after;
            }
        }
    }
    output.push_str(rest);
    output
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bindings() -> Vec<(String, ParameterValue)> {
        vec![
            (
                "patient".to_string(),
                ParameterValue::Reference("Patient/p1".to_string()),
            ),
            (
                "state".to_string(),
                ParameterValue::String("TX&name=x,y".to_string()),
            ),
        ]
    }

    #[test]
    fn placeholders_become_values() {
        let criteria = Criteria::parse("Patient?_id=%patient.id", "Patient")
            .unwrap()
            .bind(&bindings());
        let filters = criteria.filters("Patient").unwrap();
        assert_eq!(filters[0].code, "_id");
        assert_eq!(filters[0].op, FilterOp::Equals(vec!["p1".to_string()]));
    }

    #[test]
    fn parameter_value_cannot_add_parameters() {
        let criteria = Criteria::parse("Patient?family=%state", "Patient")
            .unwrap()
            .bind(&bindings());
        let filters = criteria.filters("Patient").unwrap();
        assert_eq!(filters.len(), 1);
        assert_eq!(
            filters[0].op,
            FilterOp::StartsWith(vec!["tx&name=x,y".to_string()])
        );
    }

    #[test]
    fn compartment_is_exact_reference() {
        let criteria = Criteria::parse("*?_compartment=%patient", "*")
            .unwrap()
            .bind(&bindings());
        let filters = criteria.filters("Patient").unwrap();
        assert_eq!(filters[0].code, "_compartment");
        assert_eq!(
            filters[0].op,
            FilterOp::Equals(vec!["Patient/p1".to_string()])
        );
    }

    #[test]
    fn rejects_chains_and_other_modifiers() {
        for text in [
            "Patient?organization.name=x",
            "Patient?general-practitioner:Practitioner.name=x",
            "Patient?name:contains=x",
            "Patient?_has:Observation:subject:code=x",
            "Patient?_count=10",
            "Patient?_sort=name",
        ] {
            assert!(Criteria::parse(text, "Patient").is_err(), "{text}");
        }
        assert!(Criteria::parse("Patient?name:missing=true", "Patient").is_ok());
        assert!(Criteria::parse("Patient?gender:not=male", "Patient").is_ok());
    }

    #[test]
    fn criteria_must_name_entry_type() {
        assert!(Criteria::parse("Practitioner?name=x", "Patient").is_err());
        assert!(Criteria::parse("name=x", "Patient").is_err());
    }

    #[test]
    fn unknown_placeholder_stays_literal() {
        assert_eq!(substitute_text("%other", &bindings()), "%other");
        assert_eq!(substitute_text("a%", &bindings()), "a%");
        assert_eq!(
            substitute_text("%patient/x %patient.id", &bindings()),
            "Patient/p1/x p1"
        );
        assert_eq!(substitute_text("%patients", &bindings()), "%patients");
    }

    #[test]
    fn display_shows_bound_values() {
        let criteria = Criteria::parse("Patient?_id=%patient.id", "Patient")
            .unwrap()
            .bind(&bindings());
        assert_eq!(criteria.display(), "Patient?_id=p1");
    }
}
