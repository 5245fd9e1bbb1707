//! References between the entries of a transaction Bundle. A resource created in the Bundle has
//! no id before it is created, so other entries refer to it by its `fullUrl`, a `urn:uuid:` (or
//! `urn:oid:`) URI. The server replaces those references with the new `Type/id` (FHIR R4
//! "RESTful API", transaction processing rules).

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

use super::batch::{Entry, Method, Target};
use crate::error::{ServiceError, ServiceResult};

fn is_placeholder(uri: &str) -> bool {
    uri.starts_with("urn:uuid:") || uri.starts_with("urn:oid:")
}

fn in_entry(index: usize, error: ServiceError) -> ServiceError {
    ServiceError::InEntry {
        index,
        error: Box::new(error),
    }
}

/// Calls `visit` with every `reference` string in a resource.
fn for_each_reference(value: &Value, visit: &mut impl FnMut(&str)) {
    match value {
        Value::Object(members) => {
            for (name, member) in members {
                match (name.as_str(), member) {
                    ("reference", Value::String(reference)) => visit(reference),
                    _ => for_each_reference(member, visit),
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                for_each_reference(item, visit);
            }
        }
        _ => {}
    }
}

/// Collects the placeholder URIs an entry refers to, in its resource and in its search
/// parameters.
fn placeholders_in(entry: &Entry) -> Vec<String> {
    let mut found = Vec::new();
    if let Some(resource) = &entry.resource {
        for_each_reference(resource, &mut |reference| {
            if is_placeholder(reference) {
                found.push(reference.to_string());
            }
        });
    }
    if let Target::Type { query, .. } = &entry.target {
        found.extend(
            query
                .iter()
                .filter(|(_, value)| is_placeholder(value))
                .map(|(_, value)| value.clone()),
        );
    }
    found
}

/// Returns the order in which to process the entries of a transaction: deletes, creates,
/// updates and patches, then reads, as FHIR orders them, except that an entry runs after the
/// entries whose placeholder `fullUrl` it refers to. Rejects a Bundle in which two entries
/// share a placeholder `fullUrl`, two entries change the same resource, or placeholder
/// references form a cycle.
pub(super) fn transaction_order(entries: &[Entry]) -> ServiceResult<Vec<usize>> {
    // fullUrl: unique among the entries that write a resource.
    let mut by_full_url: HashMap<&str, usize> = HashMap::new();
    for (index, entry) in entries.iter().enumerate() {
        let Some(full_url) = entry.full_url.as_deref().filter(|url| is_placeholder(url)) else {
            continue;
        };
        if entry.method == Method::Get || entry.method == Method::Delete {
            continue;
        }
        if let Some(first) = by_full_url.insert(full_url, index) {
            return Err(in_entry(
                index,
                ServiceError::invalid_field(
                    format!("fullUrl {full_url} is also the fullUrl of entry {first}"),
                    "fullUrl",
                ),
            ));
        }
    }

    // targets: at most one entry changes each [type]/[id], or the outcome would depend on the
    // processing order.
    // NOTE: conditional updates and deletes find their target only when they run, so two of
    // them that match the same resource are not caught here.
    let mut changed: HashMap<(&str, &str), usize> = HashMap::new();
    for (index, entry) in entries.iter().enumerate() {
        let Target::Instance { resource_type, id } = &entry.target else {
            continue;
        };
        if entry.method == Method::Get {
            continue;
        }
        if let Some(first) = changed.insert((resource_type.as_str(), id.as_str()), index) {
            return Err(in_entry(
                index,
                ServiceError::invalid_field(
                    format!(
                        "{resource_type}/{id} is also changed by entry {first}; a transaction \
                         may change a resource only once"
                    ),
                    "request.url",
                ),
            ));
        }
    }

    // order: Kahn's algorithm over the placeholder references, taking the ready entry that
    // comes first in FHIR's order each time.
    let mut waiting_on: Vec<usize> = vec![0; entries.len()];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); entries.len()];
    for (index, entry) in entries.iter().enumerate() {
        let mut providers: Vec<usize> = placeholders_in(entry)
            .iter()
            .filter_map(|uri| by_full_url.get(uri.as_str()).copied())
            .collect();
        providers.sort_unstable();
        providers.dedup();
        for provider in providers {
            waiting_on[index] += 1;
            dependents[provider].push(index);
        }
    }
    let key = |index: usize| (entries[index].method.processing_group(), index);
    let mut ready: BTreeSet<(u8, usize)> = (0..entries.len())
        .filter(|&index| waiting_on[index] == 0)
        .map(key)
        .collect();
    let mut order = Vec::with_capacity(entries.len());
    while let Some((_, index)) = ready.pop_first() {
        order.push(index);
        for &dependent in &dependents[index] {
            waiting_on[dependent] -= 1;
            if waiting_on[dependent] == 0 {
                ready.insert(key(dependent));
            }
        }
    }

    if order.len() < entries.len() {
        let cycle: Vec<usize> = (0..entries.len())
            .filter(|&index| waiting_on[index] > 0)
            .collect();
        let list: Vec<String> = cycle.iter().map(usize::to_string).collect();
        return Err(in_entry(
            cycle[0],
            ServiceError::invalid(format!(
                "Entries {} refer to each other in a cycle of urn:uuid references, which \
                 cannot be resolved because each needs the id of another before it is created",
                list.join(", ")
            )),
        ));
    }
    Ok(order)
}

/// Replaces the placeholder references of an entry with the `Type/id` of the entries they
/// name. `resolved` maps the `fullUrl`s of entries processed so far to their `Type/id`.
pub(super) fn resolve_references(
    entry: &mut Entry,
    resolved: &HashMap<String, String>,
) -> ServiceResult<()> {
    let unresolved = |uri: &str| {
        ServiceError::invalid(format!(
            "Reference {uri} matches the fullUrl of no entry that creates or updates a resource"
        ))
    };
    if let Some(resource) = &mut entry.resource {
        let mut missing = None;
        replace_references(resource, &mut |reference| {
            if !is_placeholder(reference) {
                return None;
            }
            let replacement = resolved.get(reference).cloned();
            if replacement.is_none() && missing.is_none() {
                missing = Some(reference.to_string());
            }
            replacement
        });
        if let Some(uri) = missing {
            return Err(unresolved(&uri));
        }
    }
    if let Target::Type { query, .. } = &mut entry.target {
        for (_, value) in query.iter_mut().filter(|(_, value)| is_placeholder(value)) {
            *value = resolved
                .get(value.as_str())
                .cloned()
                .ok_or_else(|| unresolved(value))?;
        }
    }
    Ok(())
}

/// Replaces each `reference` string for which `replacement` returns a value.
fn replace_references(value: &mut Value, replacement: &mut impl FnMut(&str) -> Option<String>) {
    match value {
        Value::Object(members) => {
            for (name, member) in members.iter_mut() {
                if let ("reference", Value::String(reference)) = (name.as_str(), &*member) {
                    if let Some(new) = replacement(reference) {
                        *member = Value::String(new);
                    }
                } else {
                    replace_references(member, replacement);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                replace_references(item, replacement);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(method: Method, target: Target, full_url: Option<&str>, resource: Value) -> Entry {
        Entry {
            method,
            target,
            resource: Some(resource),
            full_url: full_url.map(str::to_string),
            if_match: None,
            if_none_exist: None,
        }
    }

    fn create(full_url: &str, resource: Value) -> Entry {
        let resource_type = resource["resourceType"].as_str().unwrap().to_string();
        entry(
            Method::Post,
            Target::Type {
                resource_type,
                query: Vec::new(),
            },
            Some(full_url),
            resource,
        )
    }

    fn delete(resource_type: &str, id: &str) -> Entry {
        Entry {
            method: Method::Delete,
            target: Target::Instance {
                resource_type: resource_type.to_string(),
                id: id.to_string(),
            },
            resource: None,
            full_url: None,
            if_match: None,
            if_none_exist: None,
        }
    }

    #[test]
    fn referenced_entries_come_first() {
        let entries = vec![
            create(
                "urn:uuid:obs",
                json!({"resourceType": "Observation", "subject": {"reference": "urn:uuid:pat"}}),
            ),
            create("urn:uuid:pat", json!({"resourceType": "Patient"})),
            delete("Patient", "old"),
        ];
        assert_eq!(transaction_order(&entries).unwrap(), vec![2, 1, 0]);
    }

    #[test]
    fn cycle_rejected() {
        let entries = vec![
            create(
                "urn:uuid:a",
                json!({"resourceType": "Patient", "link": [{"other": {"reference": "urn:uuid:b"}}]}),
            ),
            create(
                "urn:uuid:b",
                json!({"resourceType": "Patient", "link": [{"other": {"reference": "urn:uuid:a"}}]}),
            ),
        ];
        let error = transaction_order(&entries).unwrap_err().to_string();
        assert!(error.contains("Entries 0, 1"), "{error}");
    }

    #[test]
    fn same_target_twice_rejected() {
        let entries = vec![delete("Patient", "p"), delete("Patient", "p")];
        let error = transaction_order(&entries).unwrap_err();
        assert!(matches!(error, ServiceError::InEntry { index: 1, .. }));
    }

    #[test]
    fn duplicate_full_url_rejected() {
        let entries = vec![
            create("urn:uuid:a", json!({"resourceType": "Patient"})),
            create("urn:uuid:a", json!({"resourceType": "Patient"})),
        ];
        assert!(transaction_order(&entries).is_err());
    }

    #[test]
    fn references_replaced() {
        let mut observation = entry(
            Method::Put,
            Target::Type {
                resource_type: "Observation".to_string(),
                query: vec![("subject".to_string(), "urn:uuid:pat".to_string())],
            },
            None,
            json!({"resourceType": "Observation", "subject": {"reference": "urn:uuid:pat"},
                "performer": [{"reference": "Practitioner/1"}]}),
        );
        let resolved = HashMap::from([("urn:uuid:pat".to_string(), "Patient/9".to_string())]);
        resolve_references(&mut observation, &resolved).unwrap();
        let resource = observation.resource.as_ref().unwrap();
        assert_eq!(resource["subject"]["reference"], "Patient/9");
        assert_eq!(resource["performer"][0]["reference"], "Practitioner/1");
        let Target::Type { query, .. } = &observation.target else {
            panic!("target changed");
        };
        assert_eq!(query[0].1, "Patient/9");
    }

    #[test]
    fn unknown_placeholder_rejected() {
        let mut observation = entry(
            Method::Post,
            Target::Type {
                resource_type: "Observation".to_string(),
                query: Vec::new(),
            },
            None,
            json!({"resourceType": "Observation", "subject": {"reference": "urn:uuid:nobody"}}),
        );
        let error = resolve_references(&mut observation, &HashMap::new()).unwrap_err();
        assert!(error.to_string().contains("urn:uuid:nobody"), "{error}");
    }
}
