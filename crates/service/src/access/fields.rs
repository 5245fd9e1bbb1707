//! Field paths of `hiddenFields` and `readonlyFields`: dot-separated element names such as
//! `birthDate`, `name.given` or `meta.author`, walked through arrays at every step. A name
//! ending in `[x]` (`value[x]`) stands for every choice of that element (`valueString`,
//! `valueQuantity`, …).

use serde_json::{Map, Value};

/// Returns the keys of `object` that the path segment names.
fn matching_keys(object: &Map<String, Value>, segment: &str) -> Vec<String> {
    match segment.strip_suffix("[x]") {
        Some(prefix) => object
            .keys()
            .filter(|key| {
                key.strip_prefix(prefix)
                    .and_then(|rest| rest.chars().next())
                    .is_some_and(|first| first.is_ascii_uppercase())
            })
            .cloned()
            .collect(),
        None if object.contains_key(segment) => vec![segment.to_string()],
        None => Vec::new(),
    }
}

fn segments(path: &str) -> Vec<&str> {
    path.split('.')
        .filter(|segment| !segment.is_empty())
        .collect()
}

/// Removes every value at `path`.
pub fn remove_path(resource: &mut Value, path: &str) {
    remove_segments(resource, &segments(path));
}

fn remove_segments(node: &mut Value, path: &[&str]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    match node {
        Value::Array(items) => {
            for item in items {
                remove_segments(item, path);
            }
        }
        Value::Object(object) => {
            for key in matching_keys(object, first) {
                if rest.is_empty() {
                    object.remove(&key);
                } else if let Some(child) = object.get_mut(&key) {
                    remove_segments(child, rest);
                }
            }
        }
        _ => {}
    }
}

/// Collects every value at `path`.
pub(super) fn values_at<'a>(resource: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut found = Vec::new();
    collect_segments(resource, &segments(path), &mut found);
    found
}

fn collect_segments<'a>(node: &'a Value, path: &[&str], found: &mut Vec<&'a Value>) {
    let Some((first, rest)) = path.split_first() else {
        match node {
            Value::Array(items) => found.extend(items.iter()),
            other => found.push(other),
        }
        return;
    };
    match node {
        Value::Array(items) => {
            for item in items {
                collect_segments(item, path, found);
            }
        }
        Value::Object(object) => {
            for key in matching_keys(object, first) {
                collect_segments(&object[&key], rest, found);
            }
        }
        _ => {}
    }
}

/// Gives `path` in `incoming` the values it has in `stored`, so a write can neither change
/// nor add them. Returns an error when the values cannot be put back where they were, for
/// example when the write removed or reordered the array that contains them.
pub fn restore_path(incoming: &mut Value, stored: &Value, path: &str) -> Result<(), String> {
    let path_segments = segments(path);
    if restore_segments(incoming, stored, &path_segments) {
        Ok(())
    } else {
        Err(path.to_string())
    }
}

fn same_values(incoming: &Value, stored: &Value, path: &[&str]) -> bool {
    let mut incoming_values = Vec::new();
    let mut stored_values = Vec::new();
    collect_segments(incoming, path, &mut incoming_values);
    collect_segments(stored, path, &mut stored_values);
    incoming_values == stored_values
}

fn restore_segments(incoming: &mut Value, stored: &Value, path: &[&str]) -> bool {
    let Some((first, rest)) = path.split_first() else {
        return true;
    };
    match (incoming, stored) {
        (Value::Array(new_items), Value::Array(old_items)) => {
            if new_items.len() == old_items.len() {
                new_items
                    .iter_mut()
                    .zip(old_items)
                    .all(|(new_item, old_item)| restore_segments(new_item, old_item, path))
            } else {
                let new_array = Value::Array(new_items.clone());
                same_values(&new_array, &Value::Array(old_items.clone()), path)
            }
        }
        (Value::Object(new_object), Value::Object(old_object)) => {
            let mut keys = matching_keys(new_object, first);
            for key in matching_keys(old_object, first) {
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
            for key in keys {
                let old_child = old_object.get(&key);
                if rest.is_empty() {
                    match old_child {
                        Some(value) => {
                            new_object.insert(key, value.clone());
                        }
                        None => {
                            new_object.remove(&key);
                        }
                    }
                    continue;
                }
                match (new_object.get_mut(&key), old_child) {
                    (Some(new_child), Some(old_child)) => {
                        if !restore_segments(new_child, old_child, rest) {
                            return false;
                        }
                    }
                    // Added under a new parent: the protected values are dropped.
                    (Some(new_child), None) => remove_segments(new_child, rest),
                    // The parent was removed: the stored values cannot be put back alone.
                    (None, Some(old_child)) => {
                        let mut old_values = Vec::new();
                        collect_segments(old_child, rest, &mut old_values);
                        if !old_values.is_empty() {
                            return false;
                        }
                    }
                    (None, None) => {}
                }
            }
            true
        }
        (incoming, stored) => {
            let mut old_values = Vec::new();
            collect_segments(stored, path, &mut old_values);
            if old_values.is_empty() {
                remove_segments(incoming, path);
                true
            } else {
                same_values(incoming, stored, path)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn remove_nested_and_choice_paths() {
        let mut resource = json!({"resourceType": "Observation",
            "name": [{"given": ["A"], "family": "B"}, {"given": ["C"]}],
            "valueString": "x", "valueQuantity": {"value": 1}, "valueset": 2,
            "meta": {"author": {"reference": "Practitioner/1"}, "versionId": "v"}});
        remove_path(&mut resource, "name.given");
        remove_path(&mut resource, "value[x]");
        remove_path(&mut resource, "meta.author");
        assert_eq!(
            resource,
            json!({"resourceType": "Observation", "name": [{"family": "B"}, {}],
                "valueset": 2, "meta": {"versionId": "v"}})
        );
    }

    #[test]
    fn restore_top_level() {
        let stored = json!({"birthDate": "2000-01-01"});
        let mut changed = json!({"birthDate": "1990-01-01"});
        restore_path(&mut changed, &stored, "birthDate").unwrap();
        assert_eq!(changed, stored);

        let mut added = json!({"birthDate": "1990-01-01"});
        restore_path(&mut added, &json!({}), "birthDate").unwrap();
        assert_eq!(added, json!({}));
    }

    #[test]
    fn restore_nested_in_arrays() {
        let stored = json!({"name": [{"given": ["A"], "family": "B"}]});
        let mut incoming = json!({"name": [{"family": "Changed"}]});
        restore_path(&mut incoming, &stored, "name.given").unwrap();
        assert_eq!(
            incoming,
            json!({"name": [{"family": "Changed", "given": ["A"]}]})
        );
    }

    #[test]
    fn restore_fails_when_parent_removed_or_reshaped() {
        let stored = json!({"name": [{"given": ["A"]}]});
        let mut removed = json!({});
        assert!(restore_path(&mut removed, &stored, "name.given").is_err());
        let mut reshaped = json!({"name": [{"given": ["B"]}, {"given": ["A"]}]});
        assert!(restore_path(&mut reshaped, &stored, "name.given").is_err());
        let mut same = json!({"name": [{"given": ["A"]}, {"family": "X"}]});
        assert!(restore_path(&mut same, &stored, "name.given").is_ok());
    }

    #[test]
    fn additions_under_new_parent_are_dropped() {
        let stored = json!({});
        let mut incoming = json!({"name": [{"given": ["A"], "family": "B"}]});
        restore_path(&mut incoming, &stored, "name.given").unwrap();
        assert_eq!(incoming, json!({"name": [{"family": "B"}]}));
    }

    #[test]
    fn values_at_walks_arrays() {
        let resource = json!({"name": [{"given": ["A", "B"]}, {"given": ["C"]}]});
        assert_eq!(values_at(&resource, "name.given").len(), 3);
        assert!(values_at(&resource, "name.family").is_empty());
    }
}
