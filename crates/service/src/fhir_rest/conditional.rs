//! Conditional create, update and delete (FHIR R4 "RESTful API", http.html). The condition is
//! a search that runs through [`Services::fhir_search`], so the caller's access rules decide
//! what it can find.

use serde_json::Value;

use super::FhirCaller;
use crate::Services;
use crate::error::{ServiceError, ServiceResult};

/// Search parameters that shape a result page instead of selecting resources. A condition
/// drops them, because it must see whether more than one resource matches.
const RESULT_PARAMETERS: &[&str] = &[
    "_count",
    "_offset",
    "_sort",
    "_total",
    "_include",
    "_revinclude",
    "_summary",
    "_elements",
];

/// The resource a conditional write returns, and whether the write created it.
#[derive(Debug)]
pub struct ConditionalWrite {
    pub resource: Value,
    pub created: bool,
}

/// Parses a condition: the query string of the request URL, or an `If-None-Exist` header,
/// which FHIR gives as `[search parameters]` and some clients as `Type?[search parameters]`.
pub fn parse_condition(condition: &str) -> ServiceResult<Vec<(String, String)>> {
    let query = condition
        .split_once('?')
        .map_or(condition, |(_, query)| query);
    let pairs = url::form_urlencoded::parse(query.trim().as_bytes())
        .into_owned()
        .collect();
    condition_from_query(pairs)
}

/// Turns decoded query parameters into a condition, without the result parameters.
pub fn condition_from_query(query: Vec<(String, String)>) -> ServiceResult<Vec<(String, String)>> {
    let pairs: Vec<(String, String)> = query
        .into_iter()
        .filter(|(name, _)| !name.is_empty() && !RESULT_PARAMETERS.contains(&name.as_str()))
        .collect();

    // An empty condition matches every resource of the type, which no client means.
    if pairs.is_empty() {
        return Err(ServiceError::invalid(
            "A conditional request needs at least one search parameter",
        ));
    }
    Ok(pairs)
}

impl Services {
    /// Returns the resources of `resource_type` that match `condition` and that the caller may
    /// search, at most two: the callers only need to tell none, one and more than one apart.
    async fn condition_matches(
        &self,
        caller: &FhirCaller,
        resource_type: &str,
        condition: &[(String, String)],
    ) -> ServiceResult<Vec<Value>> {
        let mut query = condition.to_vec();
        query.push(("_count".to_string(), "2".to_string()));
        let bundle = self.fhir_search(caller, resource_type, &query).await?;
        let matches = bundle
            .get("entry")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|entry| {
                entry
                    .pointer("/search/mode")
                    .and_then(Value::as_str)
                    .is_none_or(|mode| mode == "match")
            })
            .filter_map(|entry| entry.get("resource").cloned())
            .collect();
        Ok(matches)
    }

    /// Creates a resource unless one matches `condition` (`If-None-Exist`). With one match it
    /// returns that resource unchanged, and with more it fails with
    /// [`ServiceError::MultipleMatches`].
    pub async fn fhir_conditional_create(
        &self,
        caller: &FhirCaller,
        resource_type: &str,
        body: Value,
        condition: &[(String, String)],
    ) -> ServiceResult<ConditionalWrite> {
        let mut matches = self
            .condition_matches(caller, resource_type, condition)
            .await?;
        match matches.len() {
            0 => {
                let resource = self.fhir_create(caller, resource_type, body).await?;
                Ok(ConditionalWrite {
                    resource,
                    created: true,
                })
            }
            1 => Ok(ConditionalWrite {
                resource: matches.remove(0),
                created: false,
            }),
            _ => Err(ServiceError::MultipleMatches),
        }
    }

    /// Updates the one resource that matches `condition` (`PUT [type]?[search parameters]`),
    /// or creates one when none matches. Creating at an id chosen by the client (FHIR's
    /// "update as create") is not supported, so a body with an id and no match is rejected.
    pub async fn fhir_conditional_update(
        &self,
        caller: &FhirCaller,
        resource_type: &str,
        mut body: Value,
        condition: &[(String, String)],
        if_match: Option<&str>,
    ) -> ServiceResult<ConditionalWrite> {
        let body_id = body.get("id").and_then(Value::as_str).map(str::to_string);
        let matches = self
            .condition_matches(caller, resource_type, condition)
            .await?;
        match matches.as_slice() {
            [] if body_id.is_some() => Err(ServiceError::invalid_field(
                "No resource matches the condition, and the server assigns the ids of new \
                 resources; remove id from the body to create one",
                "id",
            )),
            [] => {
                let resource = self.fhir_create(caller, resource_type, body).await?;
                Ok(ConditionalWrite {
                    resource,
                    created: true,
                })
            }
            [found] => {
                let id = found
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                if body_id.as_deref().is_some_and(|body_id| body_id != id) {
                    return Err(ServiceError::invalid_field(
                        format!(
                            "The body has id {}, but the condition matches {resource_type}/{id}",
                            body_id.unwrap_or_default()
                        ),
                        "id",
                    ));
                }
                if let Some(object) = body.as_object_mut() {
                    object.insert("id".to_string(), Value::String(id.clone()));
                }
                let resource = self
                    .fhir_update(caller, resource_type, &id, body, if_match)
                    .await?;
                Ok(ConditionalWrite {
                    resource,
                    created: false,
                })
            }
            _ => Err(ServiceError::MultipleMatches),
        }
    }

    /// Deletes the one resource that matches `condition` (`DELETE [type]?[search
    /// parameters]`). No match deletes nothing and succeeds. More than one fails with
    /// [`ServiceError::MultipleMatches`], because this server supports only single conditional
    /// deletes (CapabilityStatement `conditionalDelete: single`).
    pub async fn fhir_conditional_delete(
        &self,
        caller: &FhirCaller,
        resource_type: &str,
        condition: &[(String, String)],
    ) -> ServiceResult<()> {
        let matches = self
            .condition_matches(caller, resource_type, condition)
            .await?;
        match matches.as_slice() {
            [] => Ok(()),
            [found] => {
                let id = found.get("id").and_then(Value::as_str).unwrap_or_default();
                self.fhir_delete(caller, resource_type, id).await
            }
            _ => Err(ServiceError::MultipleMatches),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn condition_accepts_both_forms() {
        let expected = vec![("identifier".to_string(), "http://x|1".to_string())];
        assert_eq!(
            parse_condition("identifier=http://x%7C1").unwrap(),
            expected
        );
        assert_eq!(
            parse_condition("Patient?identifier=http://x|1").unwrap(),
            expected
        );
        assert_eq!(parse_condition("?identifier=http://x|1").unwrap(), expected);
    }

    #[test]
    fn condition_drops_result_parameters() {
        let pairs = parse_condition("name=a&_count=50&_sort=name").unwrap();
        assert_eq!(pairs, vec![("name".to_string(), "a".to_string())]);
    }

    #[test]
    fn empty_condition_rejected() {
        for condition in ["", "?", "_count=1"] {
            assert!(parse_condition(condition).is_err(), "{condition:?}");
        }
    }
}
