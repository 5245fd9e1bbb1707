//! JSON Patch (RFC 6902) over `serde_json` values, with JSON Pointer (RFC 6901) paths. FHIR's
//! patch interaction takes this format as `application/json-patch+json`.
//!
//! [`parse`] checks the whole document before anything is applied, and [`apply`] works on a
//! copy, so a patch either applies completely or leaves the target unchanged (RFC 6902 §5).

use std::fmt;

use serde_json::{Map, Value};

/// One operation of a patch document (RFC 6902 §4). Paths are JSON Pointers.
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    Add { path: String, value: Value },
    Remove { path: String },
    Replace { path: String, value: Value },
    Move { from: String, path: String },
    Copy { from: String, path: String },
    Test { path: String, value: Value },
}

impl Operation {
    fn name(&self) -> &'static str {
        match self {
            Self::Add { .. } => "add",
            Self::Remove { .. } => "remove",
            Self::Replace { .. } => "replace",
            Self::Move { .. } => "move",
            Self::Copy { .. } => "copy",
            Self::Test { .. } => "test",
        }
    }

    fn path(&self) -> &str {
        match self {
            Self::Add { path, .. }
            | Self::Remove { path }
            | Self::Replace { path, .. }
            | Self::Move { path, .. }
            | Self::Copy { path, .. }
            | Self::Test { path, .. } => path,
        }
    }
}

/// An invalid patch document, or an operation that cannot be applied. `index` is the
/// position of the operation in the patch document, when the error concerns one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchError {
    pub index: Option<usize>,
    pub message: String,
}

impl PatchError {
    fn at(index: usize, message: impl Into<String>) -> Self {
        Self {
            index: Some(index),
            message: message.into(),
        }
    }
}

impl fmt::Display for PatchError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index {
            Some(index) => write!(formatter, "Patch operation {index}: {}", self.message),
            None => formatter.write_str(&self.message),
        }
    }
}

impl std::error::Error for PatchError {}

/// Parses a patch document: a JSON array of operation objects (RFC 6902 §3).
pub fn parse(document: &Value) -> Result<Vec<Operation>, PatchError> {
    let Value::Array(items) = document else {
        return Err(PatchError {
            index: None,
            message: "A JSON Patch document must be a JSON array of operations".to_string(),
        });
    };
    items
        .iter()
        .enumerate()
        .map(|(index, item)| parse_operation(index, item))
        .collect()
}

fn parse_operation(index: usize, item: &Value) -> Result<Operation, PatchError> {
    let Value::Object(fields) = item else {
        return Err(PatchError::at(index, "an operation must be a JSON object"));
    };
    let op = fields
        .get("op")
        .and_then(Value::as_str)
        .ok_or_else(|| PatchError::at(index, "missing or non-string \"op\""))?;
    let pointer = |member: &str| -> Result<String, PatchError> {
        let value = fields
            .get(member)
            .and_then(Value::as_str)
            .ok_or_else(|| PatchError::at(index, format!("missing or non-string \"{member}\"")))?;
        parse_pointer(value).map_err(|message| PatchError::at(index, message))?;
        Ok(value.to_string())
    };
    // RFC 6902 §4.1: "value" may be any JSON value, null included, but must be present.
    let value = || {
        fields
            .get("value")
            .cloned()
            .ok_or_else(|| PatchError::at(index, format!("\"{op}\" requires a \"value\"")))
    };
    let operation = match op {
        "add" => Operation::Add {
            path: pointer("path")?,
            value: value()?,
        },
        "remove" => Operation::Remove {
            path: pointer("path")?,
        },
        "replace" => Operation::Replace {
            path: pointer("path")?,
            value: value()?,
        },
        "move" => Operation::Move {
            from: pointer("from")?,
            path: pointer("path")?,
        },
        "copy" => Operation::Copy {
            from: pointer("from")?,
            path: pointer("path")?,
        },
        "test" => Operation::Test {
            path: pointer("path")?,
            value: value()?,
        },
        other => {
            return Err(PatchError::at(
                index,
                format!(
                    "unknown op \"{other}\"; expected add, remove, replace, move, copy or test"
                ),
            ));
        }
    };
    Ok(operation)
}

/// Applies `operations` in order to a copy of `target` and returns the result. The first
/// failing operation stops the patch, and `target` stays unchanged.
pub fn apply(target: &Value, operations: &[Operation]) -> Result<Value, PatchError> {
    let mut document = target.clone();
    for (index, operation) in operations.iter().enumerate() {
        apply_operation(&mut document, operation).map_err(|message| {
            PatchError::at(
                index,
                format!(
                    "{} {}: {message}",
                    operation.name(),
                    display_path(operation.path())
                ),
            )
        })?;
    }
    Ok(document)
}

fn display_path(path: &str) -> String {
    if path.is_empty() {
        "\"\" (the whole document)".to_string()
    } else {
        path.to_string()
    }
}

fn apply_operation(document: &mut Value, operation: &Operation) -> Result<(), String> {
    match operation {
        Operation::Add { path, value } => add(document, path, value.clone()),
        Operation::Remove { path } => remove(document, path).map(drop),
        Operation::Replace { path, value } => {
            let target = resolve_mut(document, &parse_pointer(path)?)?;
            *target = value.clone();
            Ok(())
        }
        Operation::Move { from, path } => {
            // RFC 6902 §4.4: a value cannot move into one of its own children.
            if path.starts_with(from.as_str()) && path[from.len()..].starts_with('/') {
                return Err(format!("cannot move {from} into its own child {path}"));
            }
            if from == path {
                resolve(document, &parse_pointer(from)?)?;
                return Ok(());
            }
            let value = remove(document, from)?;
            add(document, path, value)
        }
        Operation::Copy { from, path } => {
            let value = resolve(document, &parse_pointer(from)?)?.clone();
            add(document, path, value)
        }
        Operation::Test { path, value } => {
            let actual = resolve(document, &parse_pointer(path)?)?;
            if json_equal(actual, value) {
                Ok(())
            } else {
                Err(format!("test failed: the value is {actual}, not {value}"))
            }
        }
    }
}

/// Splits a JSON Pointer into its unescaped reference tokens (RFC 6901 §3 and §4).
fn parse_pointer(pointer: &str) -> Result<Vec<String>, String> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(format!(
            "invalid JSON Pointer \"{pointer}\": it must be empty or start with /"
        ));
    };
    rest.split('/')
        .map(|token| {
            // `~` is only valid as `~0` or `~1`. `~01` unescapes to `~1`, so `~1` goes first.
            let mut chars = token.chars().peekable();
            while let Some(character) = chars.next() {
                if character == '~' && !matches!(chars.peek(), Some('0' | '1')) {
                    return Err(format!(
                        "invalid JSON Pointer \"{pointer}\": ~ must be followed by 0 or 1"
                    ));
                }
            }
            Ok(token.replace("~1", "/").replace("~0", "~"))
        })
        .collect()
}

/// Parses an array index token: `0` or digits without a leading zero (RFC 6901 §4).
fn array_index(token: &str) -> Result<usize, String> {
    let digits_only = !token.is_empty() && token.bytes().all(|byte| byte.is_ascii_digit());
    if !digits_only || (token.len() > 1 && token.starts_with('0')) {
        return Err(format!("\"{token}\" is not an array index"));
    }
    token
        .parse()
        .map_err(|_| format!("array index {token} is too large"))
}

fn resolve<'a>(document: &'a Value, tokens: &[String]) -> Result<&'a Value, String> {
    let mut current = document;
    for token in tokens {
        current = match current {
            Value::Object(members) => members
                .get(token)
                .ok_or_else(|| format!("member \"{token}\" does not exist"))?,
            Value::Array(items) => {
                let index = array_index(token)?;
                items
                    .get(index)
                    .ok_or_else(|| format!("array index {index} is out of bounds"))?
            }
            _ => {
                return Err(format!(
                    "\"{token}\" is below a value that is not a container"
                ));
            }
        };
    }
    Ok(current)
}

fn resolve_mut<'a>(document: &'a mut Value, tokens: &[String]) -> Result<&'a mut Value, String> {
    let mut current = document;
    for token in tokens {
        current = match current {
            Value::Object(members) => members
                .get_mut(token)
                .ok_or_else(|| format!("member \"{token}\" does not exist"))?,
            Value::Array(items) => {
                let index = array_index(token)?;
                items
                    .get_mut(index)
                    .ok_or_else(|| format!("array index {index} is out of bounds"))?
            }
            _ => {
                return Err(format!(
                    "\"{token}\" is below a value that is not a container"
                ));
            }
        };
    }
    Ok(current)
}

/// RFC 6902 §4.1: the parent must exist. A member is added or replaced, an array element is
/// inserted before `index` (`-` appends), and the empty path replaces the whole document.
fn add(document: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let mut tokens = parse_pointer(path)?;
    let Some(last) = tokens.pop() else {
        *document = value;
        return Ok(());
    };
    match resolve_mut(document, &tokens)? {
        Value::Object(members) => {
            members.insert(last, value);
            Ok(())
        }
        Value::Array(items) => {
            let index = if last == "-" {
                items.len()
            } else {
                array_index(&last)?
            };
            if index > items.len() {
                return Err(format!(
                    "array index {index} is past the end of an array of {} elements",
                    items.len()
                ));
            }
            items.insert(index, value);
            Ok(())
        }
        _ => Err("the parent is not an object or an array".to_string()),
    }
}

/// RFC 6902 §4.2: the target must exist. Returns the removed value.
fn remove(document: &mut Value, path: &str) -> Result<Value, String> {
    let mut tokens = parse_pointer(path)?;
    let Some(last) = tokens.pop() else {
        return Err("cannot remove the whole document".to_string());
    };
    match resolve_mut(document, &tokens)? {
        Value::Object(members) => remove_member(members, &last),
        Value::Array(items) => {
            let index = array_index(&last)?;
            if index >= items.len() {
                return Err(format!("array index {index} is out of bounds"));
            }
            Ok(items.remove(index))
        }
        _ => Err("the parent is not an object or an array".to_string()),
    }
}

fn remove_member(members: &mut Map<String, Value>, name: &str) -> Result<Value, String> {
    members
        .remove(name)
        .ok_or_else(|| format!("member \"{name}\" does not exist"))
}

/// Compares two values as RFC 6902 §4.6 defines equality for `test`. Numbers are equal when
/// their values are, so `1` equals `1.0`, and objects compare members regardless of order.
fn json_equal(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Number(left), Value::Number(right)) => {
            match (left.as_i64(), right.as_i64(), left.as_u64(), right.as_u64()) {
                (Some(left), Some(right), _, _) => left == right,
                (_, _, Some(left), Some(right)) => left == right,
                _ => left.as_f64() == right.as_f64(),
            }
        }
        (Value::Array(left), Value::Array(right)) => {
            left.len() == right.len()
                && left
                    .iter()
                    .zip(right)
                    .all(|(left, right)| json_equal(left, right))
        }
        (Value::Object(left), Value::Object(right)) => {
            left.len() == right.len()
                && left.iter().all(|(name, value)| {
                    right
                        .get(name)
                        .is_some_and(|other| json_equal(value, other))
                })
        }
        _ => left == right,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patch(target: Value, operations: Value) -> Result<Value, PatchError> {
        apply(&target, &parse(&operations)?)
    }

    #[test]
    fn add_member_and_array_elements() {
        let result = patch(
            json!({"name": [{"given": ["A"]}]}),
            json!([
                {"op": "add", "path": "/active", "value": true},
                {"op": "add", "path": "/name/0/given/0", "value": "Z"},
                {"op": "add", "path": "/name/0/given/-", "value": "B"},
                {"op": "add", "path": "/name/1", "value": {"family": "F"}},
            ]),
        )
        .unwrap();
        assert_eq!(
            result,
            json!({"active": true, "name": [{"given": ["Z", "A", "B"]}, {"family": "F"}]})
        );
    }

    #[test]
    fn add_replaces_existing_member() {
        let result = patch(
            json!({"a": 1}),
            json!([{"op": "add", "path": "/a", "value": 2}]),
        );
        assert_eq!(result.unwrap(), json!({"a": 2}));
    }

    #[test]
    fn add_needs_existing_parent() {
        let error = patch(
            json!({}),
            json!([{"op": "add", "path": "/a/b", "value": 1}]),
        )
        .unwrap_err();
        assert_eq!(error.index, Some(0));
        assert!(error.message.contains("\"a\" does not exist"), "{error}");
    }

    #[test]
    fn add_past_array_end_fails() {
        let error = patch(
            json!({"a": [1]}),
            json!([{"op": "add", "path": "/a/2", "value": 3}]),
        )
        .unwrap_err();
        assert!(error.message.contains("past the end"), "{error}");
    }

    #[test]
    fn empty_path_replaces_document() {
        let result = patch(
            json!({"a": 1}),
            json!([{"op": "replace", "path": "", "value": [1]}]),
        );
        assert_eq!(result.unwrap(), json!([1]));
    }

    #[test]
    fn remove_member_and_element() {
        let result = patch(
            json!({"a": 1, "b": [1, 2, 3]}),
            json!([
                {"op": "remove", "path": "/a"},
                {"op": "remove", "path": "/b/1"},
            ]),
        );
        assert_eq!(result.unwrap(), json!({"b": [1, 3]}));
    }

    #[test]
    fn remove_missing_target_fails() {
        for path in ["/missing", "/b/3", "/b/-"] {
            let result = patch(json!({"b": [1]}), json!([{"op": "remove", "path": path}]));
            assert!(result.is_err(), "{path}");
        }
    }

    #[test]
    fn replace_needs_existing_target() {
        let result = patch(
            json!({"a": 1}),
            json!([{"op": "replace", "path": "/a", "value": null}]),
        );
        assert_eq!(result.unwrap(), json!({"a": null}));
        let result = patch(
            json!({"a": 1}),
            json!([{"op": "replace", "path": "/b", "value": 2}]),
        );
        assert!(result.is_err());
    }

    #[test]
    fn move_and_copy() {
        let result = patch(
            json!({"a": {"x": 1}, "b": [1, 2]}),
            json!([
                {"op": "copy", "from": "/a", "path": "/c"},
                {"op": "move", "from": "/a/x", "path": "/b/0"},
                {"op": "move", "from": "/c", "path": "/c"},
            ]),
        );
        assert_eq!(
            result.unwrap(),
            json!({"a": {}, "b": [1, 1, 2], "c": {"x": 1}})
        );
    }

    #[test]
    fn move_into_own_child_fails() {
        let error = patch(
            json!({"a": {"b": {}}}),
            json!([{"op": "move", "from": "/a", "path": "/a/b/c"}]),
        )
        .unwrap_err();
        assert!(error.message.contains("own child"), "{error}");
        // A sibling whose name starts with the same characters is not a child.
        let result = patch(
            json!({"a": 1}),
            json!([{"op": "move", "from": "/a", "path": "/ab"}]),
        );
        assert_eq!(result.unwrap(), json!({"ab": 1}));
    }

    #[test]
    fn test_compares_json_values() {
        let target = json!({"n": 1, "o": {"a": [1, "x"]}});
        let passes = json!([
            {"op": "test", "path": "/n", "value": 1.0},
            {"op": "test", "path": "/o", "value": {"a": [1, "x"]}},
        ]);
        assert!(patch(target.clone(), passes).is_ok());
        let fails = json!([{"op": "test", "path": "/n", "value": "1"}]);
        let error = patch(target, fails).unwrap_err();
        assert!(error.message.contains("test failed"), "{error}");
    }

    #[test]
    fn failed_operation_leaves_target_unchanged() {
        let target = json!({"a": 1});
        let operations = parse(&json!([
            {"op": "replace", "path": "/a", "value": 2},
            {"op": "test", "path": "/a", "value": 3},
        ]))
        .unwrap();
        let error = apply(&target, &operations).unwrap_err();
        assert_eq!(error.index, Some(1));
        assert_eq!(target, json!({"a": 1}));
    }

    #[test]
    fn pointer_escapes() {
        let result = patch(
            json!({"a/b": 1, "m~n": 2}),
            json!([
                {"op": "test", "path": "/a~1b", "value": 1},
                {"op": "test", "path": "/m~0n", "value": 2},
                {"op": "add", "path": "/~01", "value": 3},
            ]),
        );
        assert_eq!(result.unwrap()["~1"], json!(3));
    }

    #[test]
    fn invalid_documents_rejected() {
        let cases = [
            (json!({"op": "add"}), "JSON array"),
            (json!([1]), "JSON object"),
            (json!([{"path": "/a"}]), "\"op\""),
            (
                json!([{"op": "merge", "path": "/a"}]),
                "unknown op \"merge\"",
            ),
            (json!([{"op": "add", "path": "/a"}]), "requires a \"value\""),
            (
                json!([{"op": "add", "path": "a", "value": 1}]),
                "start with /",
            ),
            (
                json!([{"op": "remove", "path": "/a~2"}]),
                "~ must be followed",
            ),
            (json!([{"op": "move", "path": "/a"}]), "\"from\""),
        ];
        for (document, expected) in cases {
            let error = parse(&document).unwrap_err();
            assert!(error.to_string().contains(expected), "{document}: {error}");
        }
    }

    #[test]
    fn array_index_rejects_leading_zero() {
        let result = patch(
            json!({"a": [1, 2]}),
            json!([{"op": "remove", "path": "/a/01"}]),
        );
        assert!(result.is_err());
    }
}
