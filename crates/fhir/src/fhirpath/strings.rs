//! The string functions (N1 §5.6 String Manipulation).
//!
//! Each takes a single string, and an empty input or an empty argument gives an empty result.
//! Indexes and lengths count Unicode characters, not bytes.

use super::compare::describe_type;
use super::error::FhirPathError;
use super::eval::{Collection, single};
use super::functions::{Function, integer_argument};
use super::item::Item;

/// Maximum length, in characters, of a string that `replace()` builds. FHIR R4 strings "SHALL
/// NOT exceed 1,048,576 (1024*1024) characters", so a longer result cannot be a valid FHIR
/// value. The limit also stops an expression from multiplying a string's size without bound.
const MAX_RESULT_CHARS: usize = 1_048_576;

/// Applies the string function `function` to `input` with its evaluated arguments.
pub(super) fn call<'a>(
    function: Function,
    input: Collection<'a>,
    args: Vec<Collection<'a>>,
    position: usize,
) -> Result<Collection<'a>, FhirPathError> {
    let name = function.name();
    let Some(item) = single(input, position, name)? else {
        return Ok(Vec::new());
    };
    let text = expect_string(&item, position, name, "input")?;

    let result = match function {
        Function::Upper => Item::string(text.to_uppercase()),
        Function::Lower => Item::string(text.to_lowercase()),
        Function::Length => Item::integer(count_chars(text)),
        Function::ToChars => {
            return Ok(text.chars().map(|c| Item::string(c.to_string())).collect());
        }
        Function::Substring => return substring(text, args, position),
        _ => {
            let mut strings = Vec::with_capacity(args.len());
            for arg in args {
                let Some(arg) = single(arg, position, name)? else {
                    return Ok(Vec::new());
                };
                strings.push(expect_string(&arg, position, name, "argument")?.to_string());
            }
            string_function(function, text, &strings, position)?
        }
    };
    Ok(vec![result])
}

fn string_function<'a>(
    function: Function,
    text: &str,
    args: &[String],
    position: usize,
) -> Result<Item<'a>, FhirPathError> {
    let argument = args.first().map(String::as_str).unwrap_or_default();
    let item = match function {
        Function::StartsWith => Item::boolean(text.starts_with(argument)),
        Function::EndsWith => Item::boolean(text.ends_with(argument)),
        Function::Contains => Item::boolean(text.contains(argument)),
        Function::IndexOf => Item::integer(
            text.find(argument)
                .map_or(-1, |byte_index| count_chars(&text[..byte_index])),
        ),
        Function::Replace => Item::string(replace(text, argument, &args[1], position)?),
        other => {
            return Err(FhirPathError::evaluation(
                position,
                format!("{} is not a string function", other.name()),
            ));
        }
    };
    Ok(item)
}

/// Evaluates `substring(start [, length])`, which is empty when `start` is outside the string.
fn substring<'a>(
    text: &str,
    mut args: Vec<Collection<'a>>,
    position: usize,
) -> Result<Collection<'a>, FhirPathError> {
    let length = match args.len() {
        2 => match args.pop() {
            Some(length) if length.is_empty() => None,
            Some(length) => Some(integer_argument(length, position, "substring")?),
            None => None,
        },
        _ => None,
    };
    let start = args.pop().unwrap_or_default();
    if start.is_empty() {
        return Ok(Vec::new());
    }
    let start = integer_argument(start, position, "substring")?;
    let Ok(start) = usize::try_from(start) else {
        return Ok(Vec::new());
    };
    if start >= text.chars().count() {
        return Ok(Vec::new());
    }
    let tail = text.chars().skip(start);
    let result: String = match length {
        Some(length) => tail
            .take(usize::try_from(length.max(0)).unwrap_or(0))
            .collect(),
        None => tail.collect(),
    };
    Ok(vec![Item::string(result)])
}

/// Replaces every `pattern` with `substitution`. An empty pattern puts the substitution before
/// and after every character, as N1 §5.6 `replace` specifies.
fn replace(
    text: &str,
    pattern: &str,
    substitution: &str,
    position: usize,
) -> Result<String, FhirPathError> {
    let text_chars = text.chars().count();
    let occurrences = if pattern.is_empty() {
        text_chars + 1
    } else {
        text.matches(pattern).count()
    };
    let result_chars = text_chars - occurrences * pattern.chars().count()
        + occurrences.saturating_mul(substitution.chars().count());
    if result_chars > MAX_RESULT_CHARS {
        return Err(FhirPathError::evaluation(
            position,
            format!(
                "replace() would build a string of {result_chars} characters, more than the \
                 {MAX_RESULT_CHARS} a FHIR string may hold"
            ),
        ));
    }
    if !pattern.is_empty() {
        return Ok(text.replace(pattern, substitution));
    }
    let mut result = String::with_capacity(text.len() + occurrences * substitution.len());
    result.push_str(substitution);
    for c in text.chars() {
        result.push(c);
        result.push_str(substitution);
    }
    Ok(result)
}

fn expect_string<'t>(
    item: &'t Item,
    position: usize,
    function: &str,
    role: &str,
) -> Result<&'t str, FhirPathError> {
    item.as_str().ok_or_else(|| {
        FhirPathError::evaluation(
            position,
            format!(
                "{function}() expects a string {role}, found {}",
                describe_type(item)
            ),
        )
    })
}

fn count_chars(text: &str) -> i64 {
    i64::try_from(text.chars().count()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn run(function: Function, text: &str, args: &[Value]) -> Vec<Value> {
        let args = args
            .iter()
            .map(|arg| vec![Item::owned(arg.clone())])
            .collect();
        call(function, vec![Item::string(text)], args, 0)
            .unwrap_or_else(|error| panic!("{function:?}({text}): {error}"))
            .into_iter()
            .map(Item::into_value)
            .collect()
    }

    #[test]
    fn predicates() {
        assert_eq!(
            run(Function::StartsWith, "Patient/1", &[json!("Patient/")]),
            [json!(true)]
        );
        assert_eq!(
            run(Function::EndsWith, "abc", &[json!("bc")]),
            [json!(true)]
        );
        assert_eq!(
            run(Function::Contains, "abc", &[json!("d")]),
            [json!(false)]
        );
        assert_eq!(run(Function::Contains, "abc", &[json!("")]), [json!(true)]);
    }

    #[test]
    fn index_of_counts_characters() {
        assert_eq!(run(Function::IndexOf, "héllo", &[json!("llo")]), [json!(2)]);
        assert_eq!(run(Function::IndexOf, "abc", &[json!("x")]), [json!(-1)]);
        assert_eq!(run(Function::IndexOf, "abc", &[json!("")]), [json!(0)]);
    }

    #[test]
    fn substring_bounds() {
        assert_eq!(
            run(Function::Substring, "héllo", &[json!(1), json!(3)]),
            [json!("éll")]
        );
        assert_eq!(
            run(Function::Substring, "hello", &[json!(3)]),
            [json!("lo")]
        );
        assert_eq!(
            run(Function::Substring, "hello", &[json!(1), json!(99)]),
            [json!("ello")]
        );
        assert!(run(Function::Substring, "hello", &[json!(5)]).is_empty());
        assert!(run(Function::Substring, "hello", &[json!(-1)]).is_empty());
    }

    #[test]
    fn case_length_and_chars() {
        assert_eq!(run(Function::Upper, "abé", &[]), [json!("ABÉ")]);
        assert_eq!(run(Function::Lower, "ABC", &[]), [json!("abc")]);
        assert_eq!(run(Function::Length, "héllo", &[]), [json!(5)]);
        assert_eq!(run(Function::ToChars, "ab", &[]), [json!("a"), json!("b")]);
    }

    #[test]
    fn replace_patterns() {
        assert_eq!(
            run(Function::Replace, "a-b-c", &[json!("-"), json!("+")]),
            [json!("a+b+c")]
        );
        assert_eq!(
            run(Function::Replace, "abc", &[json!(""), json!("x")]),
            [json!("xaxbxcx")]
        );
        assert_eq!(
            run(Function::Replace, "abc", &[json!("b"), json!("")]),
            [json!("ac")]
        );
    }

    #[test]
    fn replace_rejects_huge_results() {
        let text = "a".repeat(2_000);
        let substitution = json!("b".repeat(1_000));
        let args = vec![vec![Item::string("a")], vec![Item::owned(substitution)]];
        let error = call(Function::Replace, vec![Item::string(text)], args, 4).unwrap_err();
        assert!(
            matches!(&error, FhirPathError::Evaluation { position: 4, message } if message.contains("2000000 characters")),
            "{error}"
        );
    }

    #[test]
    fn non_string_input_is_an_error() {
        let error = call(Function::Upper, vec![Item::integer(1)], Vec::new(), 2).unwrap_err();
        assert_eq!(
            error,
            FhirPathError::evaluation(2, "upper() expects a string input, found integer")
        );
    }

    #[test]
    fn empty_argument_gives_empty_result() {
        let result = call(
            Function::StartsWith,
            vec![Item::string("a")],
            vec![Vec::new()],
            0,
        );
        assert_eq!(result, Ok(Vec::new()));
    }
}
