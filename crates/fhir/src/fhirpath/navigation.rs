//! Path navigation over FHIR JSON: members, choice elements, children and references.

use std::borrow::Cow;

use serde_json::{Map, Value, json};

use super::item::{Item, Tag};
use super::model::{choice_type, looks_like_resource_type};

/// Converts `value` to a collection. An array gives its elements and `null` gives nothing,
/// because FHIR JSON uses `null` only as a placeholder in arrays of primitives.
pub(super) fn collection_of(value: &Value) -> Vec<Item<'_>> {
    let mut items = Vec::new();
    push_values(value, Tag::Json, &mut |value, tag| {
        items.push(Item {
            value: Cow::Borrowed(value),
            tag,
        });
    });
    items
}

/// Appends the values of member `name` of `item` to `output` (N1 §3 Path selection).
///
/// When the object has no key `name`, keys of the form `name` + type, such as `valueQuantity`
/// for `value`, are read as the choice element `name[x]`, and each value is tagged with its type.
pub(super) fn push_member<'a>(item: &Item<'a>, name: &str, output: &mut Vec<Item<'a>>) {
    match &item.value {
        Cow::Borrowed(value) => {
            if let Value::Object(object) = value {
                member_values(object, name, &mut |child, tag| {
                    output.push(Item {
                        value: Cow::Borrowed(child),
                        tag,
                    });
                });
            }
        }
        Cow::Owned(Value::Object(object)) => member_values(object, name, &mut |child, tag| {
            output.push(Item {
                value: Cow::Owned(child.clone()),
                tag,
            });
        }),
        Cow::Owned(_) => {}
    }
}

fn member_values<'v>(
    object: &'v Map<String, Value>,
    name: &str,
    push: &mut dyn FnMut(&'v Value, Tag),
) {
    if let Some(value) = object.get(name) {
        push_values(value, Tag::Json, push);
        return;
    }
    for (key, value) in object {
        if let Some(fhir_type) = key.strip_prefix(name).and_then(choice_type) {
            push_values(value, Tag::Fhir(fhir_type), push);
        }
    }
}

fn push_values<'v>(value: &'v Value, tag: Tag, push: &mut dyn FnMut(&'v Value, Tag)) {
    match value {
        Value::Null => {}
        Value::Array(elements) => {
            for element in elements.iter().filter(|element| !element.is_null()) {
                push(element, tag);
            }
        }
        _ => push(value, tag),
    }
}

/// Appends the child elements of `item` to `output` (N1 §5.8 `children()`).
///
/// `resourceType` and the `_name` keys that carry the id and extensions of primitives are not
/// elements of their own, so they are skipped.
pub(super) fn push_children<'a>(item: &Item<'a>, output: &mut Vec<Item<'a>>) {
    match &item.value {
        Cow::Borrowed(Value::Object(object)) => child_values(object, &mut |child| {
            output.push(Item::borrowed(child));
        }),
        Cow::Owned(Value::Object(object)) => child_values(object, &mut |child| {
            output.push(Item::owned(child.clone()));
        }),
        _ => {}
    }
}

fn child_values<'v>(object: &'v Map<String, Value>, push: &mut dyn FnMut(&'v Value)) {
    for (key, value) in object {
        if key == "resourceType" || key.starts_with('_') {
            continue;
        }
        push_values(value, Tag::Json, &mut |child, _| push(child));
    }
}

/// Collects all descendants of the items, children first and then their children (N1 §5.8
/// `descendants()`). A work list replaces recursion, so deeply nested JSON cannot exhaust the
/// stack.
pub(super) fn descendants<'a>(input: &[Item<'a>]) -> Vec<Item<'a>> {
    let mut output = Vec::new();
    for item in input {
        push_children(item, &mut output);
    }
    let mut next = 0;
    while next < output.len() {
        let item = output[next].clone();
        push_children(&item, &mut output);
        next += 1;
    }
    output
}

/// Appends `extension` entries of `item` whose `url` is `url` (FHIR R4 `extension(url)`).
pub(super) fn push_extensions<'a>(item: &Item<'a>, url: &str, output: &mut Vec<Item<'a>>) {
    let mut extensions = Vec::new();
    push_member(item, "extension", &mut extensions);
    output.extend(
        extensions
            .into_iter()
            .filter(|extension| extension.value.get("url").and_then(Value::as_str) == Some(url)),
    );
}

/// Resolves a `Reference` or a reference string (FHIR R4 `resolve()`) without any database.
///
/// `#id` finds a contained resource of `root`, and inside a Bundle `root` an entry whose
/// `fullUrl` or `resourceType/id` matches. Any other literal reference `[base/]Type/id` gives a
/// stand-in `{"resourceType": Type, "id": id}`, enough for `resolve() is Patient`. References
/// by identifier only, and `urn:` references not in the Bundle, resolve to nothing.
pub(super) fn resolve<'a>(item: &Item<'a>, root: &'a Value) -> Option<Item<'a>> {
    let reference = match item.value.as_ref() {
        Value::String(reference) => reference.as_str(),
        Value::Object(object) => object.get("reference")?.as_str()?,
        _ => return None,
    };

    if let Some(id) = reference.strip_prefix('#') {
        return find_contained(root, id).map(Item::borrowed);
    }
    let literal = parse_literal_reference(reference);
    if root.get("resourceType").and_then(Value::as_str) == Some("Bundle")
        && let Some(resource) = find_in_bundle(root, reference, literal)
    {
        return Some(Item::borrowed(resource));
    }
    let (resource_type, id) = literal?;
    Some(Item::owned(
        json!({"resourceType": resource_type, "id": id}),
    ))
}

/// Splits `[base/]Type/id[/_history/version]` into type and id.
fn parse_literal_reference(reference: &str) -> Option<(&str, &str)> {
    let without_version = match reference.find("/_history/") {
        Some(index) => &reference[..index],
        None => reference,
    };
    let mut segments = without_version.rsplit('/');
    let id = segments.next()?;
    let resource_type = segments.next()?;
    let valid_id = !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    (valid_id && looks_like_resource_type(resource_type)).then_some((resource_type, id))
}

fn find_contained<'a>(root: &'a Value, id: &str) -> Option<&'a Value> {
    root.get("contained")?
        .as_array()?
        .iter()
        .find(|resource| resource.get("id").and_then(Value::as_str) == Some(id))
}

fn find_in_bundle<'a>(
    bundle: &'a Value,
    reference: &str,
    literal: Option<(&str, &str)>,
) -> Option<&'a Value> {
    let entries = bundle.get("entry")?.as_array()?;
    let by_full_url = entries
        .iter()
        .find(|entry| entry.get("fullUrl").and_then(Value::as_str) == Some(reference));
    if let Some(entry) = by_full_url {
        return entry.get("resource");
    }
    let (resource_type, id) = literal?;
    entries
        .iter()
        .filter_map(|entry| entry.get("resource"))
        .find(|resource| {
            resource.get("resourceType").and_then(Value::as_str) == Some(resource_type)
                && resource.get("id").and_then(Value::as_str) == Some(id)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member<'a>(value: &'a Value, name: &str) -> Vec<Item<'a>> {
        let mut output = Vec::new();
        push_member(&Item::borrowed(value), name, &mut output);
        output
    }

    #[test]
    fn member_flattens_arrays_and_skips_nulls() {
        let patient = json!({"given": ["a", null, "b"], "family": "F", "gender": null});
        let given: Vec<Value> = member(&patient, "given")
            .into_iter()
            .map(Item::into_value)
            .collect();
        assert_eq!(given, vec![json!("a"), json!("b")]);
        assert_eq!(member(&patient, "family").len(), 1);
        assert!(member(&patient, "gender").is_empty());
        assert!(member(&patient, "missing").is_empty());
    }

    #[test]
    fn member_finds_choice_elements() {
        let observation =
            json!({"valueQuantity": {"value": 5}, "valueSet": "x", "status": "final"});
        let value = member(&observation, "value");
        assert_eq!(value.len(), 1);
        assert_eq!(value[0].tag, Tag::Fhir("Quantity"));
        assert_eq!(value[0].value.as_ref(), &json!({"value": 5}));

        let explicit = member(&observation, "valueQuantity");
        assert_eq!(explicit[0].tag, Tag::Json);
    }

    #[test]
    fn member_ignores_keys_that_are_not_choice_types() {
        let patient = json!({"managingOrganization": {"reference": "Organization/1"}});
        assert!(member(&patient, "managing").is_empty());
    }

    #[test]
    fn member_of_owned_item_is_owned() {
        let mut output = Vec::new();
        push_member(&Item::owned(json!({"a": [1, 2]})), "a", &mut output);
        assert_eq!(output.len(), 2);
        assert!(matches!(output[0].value, Cow::Owned(_)));
        push_member(&Item::string("text"), "a", &mut output);
        assert_eq!(output.len(), 2);
    }

    #[test]
    fn children_skip_metadata_keys() {
        let patient = json!({"resourceType": "Patient", "birthDate": "2000", "_birthDate": {}, "name": [{}, {}]});
        let mut output = Vec::new();
        push_children(&Item::borrowed(&patient), &mut output);
        assert_eq!(output.len(), 3);
    }

    #[test]
    fn descendants_walk_every_level() {
        let value = json!({"a": {"b": {"c": [1, 2]}}});
        let all = descendants(&[Item::borrowed(&value)]);
        assert_eq!(all.len(), 4);
    }

    #[test]
    fn descendants_of_deep_json_do_not_recurse() {
        let mut value = json!(1);
        for _ in 0..10_000 {
            // `json!` would serialize the inner value recursively, so build the object directly.
            value = Value::Object(Map::from_iter([("a".to_string(), value)]));
        }
        assert_eq!(descendants(&[Item::borrowed(&value)]).len(), 10_000);
        // serde_json drops values recursively, so the deep value is leaked rather than dropped.
        std::mem::forget(value);
    }

    #[test]
    fn resolve_literal_references() {
        let root = json!({"resourceType": "Observation"});
        let cases = [
            ("Patient/123", Some(("Patient", "123"))),
            (
                "https://example.org/fhir/Patient/123",
                Some(("Patient", "123")),
            ),
            ("Patient/123/_history/2", Some(("Patient", "123"))),
            ("patient/123", None),
            ("Patient/", None),
            ("123", None),
            ("urn:uuid:3f2c", None),
        ];
        for (reference, expected) in cases {
            let item = Item::owned(json!({"reference": reference}));
            let resolved = resolve(&item, &root).map(Item::into_value);
            let expected = expected
                .map(|(resource_type, id)| json!({"resourceType": resource_type, "id": id}));
            assert_eq!(resolved, expected, "{reference}");
        }
    }

    #[test]
    fn resolve_contained_and_bundle_entries() {
        let observation = json!({
            "resourceType": "Observation",
            "contained": [{"resourceType": "Patient", "id": "p1", "active": true}]
        });
        let contained = resolve(&Item::string("#p1"), &observation).unwrap();
        assert_eq!(contained.value.get("active"), Some(&json!(true)));
        assert!(resolve(&Item::string("#p2"), &observation).is_none());

        let bundle = json!({
            "resourceType": "Bundle",
            "entry": [
                {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Patient", "id": "a"}},
                {"resource": {"resourceType": "Practitioner", "id": "b", "active": false}}
            ]
        });
        let by_url = resolve(&Item::string("urn:uuid:1"), &bundle).unwrap();
        assert_eq!(by_url.value.get("id"), Some(&json!("a")));
        let by_id = resolve(&Item::string("Practitioner/b"), &bundle).unwrap();
        assert_eq!(by_id.value.get("active"), Some(&json!(false)));
        assert!(resolve(&Item::string("urn:uuid:2"), &bundle).is_none());
    }

    #[test]
    fn extensions_filter_by_url() {
        let patient = json!({"extension": [
            {"url": "http://a", "valueString": "x"},
            {"url": "http://b", "valueString": "y"}
        ]});
        let mut output = Vec::new();
        push_extensions(&Item::borrowed(&patient), "http://b", &mut output);
        assert_eq!(output.len(), 1);
        assert_eq!(output[0].value.get("valueString"), Some(&json!("y")));
    }
}
