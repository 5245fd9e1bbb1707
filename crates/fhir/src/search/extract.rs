//! Extraction of search values at write time: each search parameter's FHIRPath expression
//! is evaluated on the resource, and every element it selects becomes index rows of the
//! parameter's type (FHIR R4 search.html#ptypes lists which element types
//! each parameter type reads).

use serde_json::{Map, Value};

use super::compartment::compartment_of;
use super::date::parse_date_range;
use super::definitions::{ParamKind, SearchParam, params_of};
use crate::fhirpath::Variables;

/// The version of the extraction rules. A store whose index was built under another version
/// rebuilds it at start-up, so raise it whenever a change here or in the generated tables
/// changes which rows a stored resource gets.
pub const INDEX_VERSION: i64 = 1;

/// The code under which the Patient compartments of a resource are indexed, as `Patient/<id>`
/// references (Medplum's search parameter of that name).
pub const COMPARTMENT_CODE: &str = "_compartment";

/// Parameters kept in columns of the resource row instead of index rows.
const COLUMN_PARAMS: &[&str] = &["_id", "_lastUpdated"];

/// One indexed value of one search parameter. Which fields are set depends on the type:
///
/// | type      | `value`                 | `system`     | `text`                  | other            |
/// |-----------|-------------------------|--------------|-------------------------|------------------|
/// | string    | lower-cased text        |              | text as written         |                  |
/// | token     | code                    | code system  | lower-cased display     |                  |
/// | reference | `Type/id` or URL        |              |                         |                  |
/// | uri       | the URI                 |              |                         |                  |
/// | date      | the value as written    |              |                         | `low`, `high`    |
/// | number    | the value as written    |              |                         | `number`         |
#[derive(Debug, Clone, PartialEq)]
pub struct IndexValue {
    pub code: &'static str,
    pub value: String,
    pub system: Option<String>,
    pub text: Option<String>,
    /// Start and end of a date's range, normalized instants.
    pub low: Option<String>,
    pub high: Option<String>,
    pub number: Option<f64>,
}

impl IndexValue {
    pub(super) fn new(code: &'static str, value: String) -> Self {
        Self {
            code,
            value,
            system: None,
            text: None,
            low: None,
            high: None,
            number: None,
        }
    }
}

/// Extracts every indexed search value of `resource`, and its Patient compartments under
/// [`COMPARTMENT_CODE`]. A resource without a known `resourceType` has none.
pub fn index_values(resource: &Value) -> Vec<IndexValue> {
    let Some(resource_type) = resource.get("resourceType").and_then(Value::as_str) else {
        return Vec::new();
    };
    let mut values = Vec::new();
    for param in params_of(resource_type) {
        if COLUMN_PARAMS.contains(&param.code.as_str()) {
            continue;
        }
        for value in param_values(param, resource) {
            if !values.contains(&value) {
                values.push(value);
            }
        }
    }
    for patient in compartment_of(resource_type, resource, &values) {
        values.push(IndexValue::new(COMPARTMENT_CODE, patient));
    }
    values
}

/// Extracts the index rows of one parameter. An expression that fails on this resource (a string
/// compared with a number, say) indexes nothing rather than rejecting the write, because
/// the resource itself is valid FHIR and only the search over it is affected.
pub(super) fn param_values(param: &'static SearchParam, resource: &Value) -> Vec<IndexValue> {
    let Some(expression) = &param.expression else {
        return Vec::new();
    };
    let Ok(nodes) = expression.evaluate(resource, &Variables::default()) else {
        return Vec::new();
    };
    let code = param.code.as_str();
    let mut rows = Vec::new();
    for node in &nodes {
        match param.kind {
            ParamKind::String => string_rows(code, node, &mut rows),
            ParamKind::Token => token_rows(code, node, &mut rows),
            ParamKind::Reference => reference_rows(code, node, &mut rows),
            ParamKind::Uri => {
                if let Some(uri) = node.as_str() {
                    rows.push(IndexValue::new(code, uri.to_string()));
                }
            }
            ParamKind::Date => date_rows(code, node, &mut rows),
            ParamKind::Number => number_rows(code, node, &mut rows),
            ParamKind::Composite | ParamKind::Quantity | ParamKind::Special => {}
        }
    }
    rows
}

/// Fields of HumanName and Address that string search matches (FHIR R4 search.html#string).
const STRING_FIELDS: &[&str] = &[
    "text",
    "family",
    "given",
    "prefix",
    "suffix",
    "line",
    "city",
    "district",
    "state",
    "postalCode",
    "country",
];

/// String rows: the text lower-cased for prefix and substring search, and as written for
/// `:exact`.
///
/// NOTE: accents are kept, so `jose` does not find `José`, although FHIR string search is
/// meant to ignore accents as well as case.
fn string_rows(code: &'static str, node: &Value, rows: &mut Vec<IndexValue>) {
    let mut push = |text: &str| {
        let mut row = IndexValue::new(code, text.to_lowercase());
        row.text = Some(text.to_string());
        rows.push(row);
    };
    match node {
        Value::String(text) => push(text),
        Value::Object(object) => {
            for field in STRING_FIELDS {
                match object.get(*field) {
                    Some(Value::String(text)) => push(text),
                    Some(Value::Array(items)) => {
                        items.iter().filter_map(Value::as_str).for_each(&mut push)
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

/// Token rows of a code, boolean, Coding, CodeableConcept, Identifier or ContactPoint
/// (FHIR R4 search.html#token). Email addresses are lower-cased, because medgate matches them
/// without regard to case everywhere.
fn token_rows(code: &'static str, node: &Value, rows: &mut Vec<IndexValue>) {
    let normalize = |value: &str| {
        if code == "email" {
            value.to_lowercase()
        } else {
            value.to_string()
        }
    };
    match node {
        Value::String(value) => rows.push(IndexValue::new(code, normalize(value))),
        Value::Bool(flag) => rows.push(IndexValue::new(code, flag.to_string())),
        Value::Number(number) => rows.push(IndexValue::new(code, number.to_string())),
        Value::Object(object) if object.contains_key("coding") || !has_token_code(object) => {
            let concept_text = text_of(object.get("text"));
            let codings = object.get("coding").and_then(Value::as_array);
            for coding in codings.into_iter().flatten() {
                if let Some(coding) = coding.as_object() {
                    let display = concept_text
                        .clone()
                        .or_else(|| text_of(coding.get("display")));
                    push_token(code, coding, "code", display, &normalize, rows);
                }
            }
        }
        Value::Object(object) if object.contains_key("code") => {
            let display = text_of(object.get("display"));
            push_token(code, object, "code", display, &normalize, rows);
        }
        // Identifier and ContactPoint: `value` in `system`.
        Value::Object(object) => {
            let display = object
                .get("type")
                .and_then(|kind| text_of(kind.get("text")));
            push_token(code, object, "value", display, &normalize, rows);
        }
        _ => {}
    }
}

fn has_token_code(object: &Map<String, Value>) -> bool {
    object.contains_key("code") || object.contains_key("value")
}

fn text_of(value: Option<&Value>) -> Option<String> {
    value.and_then(Value::as_str).map(str::to_lowercase)
}

fn push_token(
    code: &'static str,
    object: &Map<String, Value>,
    code_field: &str,
    display: Option<String>,
    normalize: &impl Fn(&str) -> String,
    rows: &mut Vec<IndexValue>,
) {
    let Some(value) = object.get(code_field).and_then(Value::as_str) else {
        return;
    };
    let mut row = IndexValue::new(code, normalize(value));
    row.system = object
        .get("system")
        .and_then(Value::as_str)
        .map(str::to_string);
    row.text = display;
    rows.push(row);
}

/// Reference rows: the `reference` of a Reference, without a `_history/<version>` suffix, or a
/// canonical or uri value as written.
fn reference_rows(code: &'static str, node: &Value, rows: &mut Vec<IndexValue>) {
    let reference = match node {
        Value::Object(object) => object.get("reference").and_then(Value::as_str),
        Value::String(text) => Some(text.as_str()),
        _ => None,
    };
    let Some(reference) = reference else {
        return;
    };
    let reference = match reference.split_once("/_history/") {
        Some((current, _)) => current,
        None => reference,
    };
    rows.push(IndexValue::new(code, reference.to_string()));
}

/// Date rows of a date, dateTime, instant, Period or Timing (FHIR R4 search.html#date). A Period
/// without an end is open towards the future, one without a start towards the past.
fn date_rows(code: &'static str, node: &Value, rows: &mut Vec<IndexValue>) {
    let mut push = |value: String, low: String, high: String| {
        let mut row = IndexValue::new(code, value);
        row.low = Some(low);
        row.high = Some(high);
        rows.push(row);
    };
    match node {
        Value::String(text) => {
            if let Some(range) = parse_date_range(text) {
                push(text.clone(), range.low, range.high);
            }
        }
        Value::Object(object) if object.contains_key("event") => {
            let events = object.get("event").and_then(Value::as_array);
            for event in events.into_iter().flatten().filter_map(Value::as_str) {
                if let Some(range) = parse_date_range(event) {
                    push(event.to_string(), range.low, range.high);
                }
            }
        }
        Value::Object(object) => {
            let start = object.get("start").and_then(Value::as_str);
            let end = object.get("end").and_then(Value::as_str);
            if start.is_none() && end.is_none() {
                return;
            }
            let low = start.and_then(parse_date_range).map(|range| range.low);
            let high = end.and_then(parse_date_range).map(|range| range.high);
            let text = format!("{}/{}", start.unwrap_or_default(), end.unwrap_or_default());
            push(
                text,
                low.unwrap_or_else(|| super::date::MIN_INSTANT.to_string()),
                high.unwrap_or_else(|| super::date::MAX_INSTANT.to_string()),
            );
        }
        _ => {}
    }
}

fn number_rows(code: &'static str, node: &Value, rows: &mut Vec<IndexValue>) {
    let (number, text) = match node {
        Value::Number(number) => (number.as_f64(), number.to_string()),
        Value::String(text) => (text.parse::<f64>().ok(), text.clone()),
        _ => return,
    };
    if let Some(number) = number.filter(|number| number.is_finite()) {
        let mut row = IndexValue::new(code, text);
        row.number = Some(number);
        rows.push(row);
    }
}
