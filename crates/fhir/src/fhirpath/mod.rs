//! A FHIRPath evaluator for FHIR R4 JSON, covering the part of FHIRPath Normative Release 1
//! (<https://hl7.org/fhirpath/N1/>) that access-policy write constraints and FHIR R4
//! search-parameter expressions use.
//!
//! ```
//! use medgate_fhir::fhirpath::{self, Variables};
//! use serde_json::json;
//!
//! let constraint = fhirpath::parse("%after.status = 'final' implies %before.status != 'final'")?;
//! let variables = Variables::from([
//!     ("before".to_string(), json!({"status": "preliminary"})),
//!     ("after".to_string(), json!({"status": "final"})),
//! ]);
//! assert_eq!(constraint.evaluate_bool(&json!(null), &variables)?, Some(true));
//! # Ok::<(), fhirpath::FhirPathError>(())
//! ```
//!
//! There are no FHIR structure definitions here, so:
//! - an item's type comes from its `resourceType`, from the key of a choice element
//!   (`valueQuantity` is a `Quantity`, `onsetDateTime` a `dateTime`), or from its JSON value.
//!   A plain JSON string is a `string`, never a `code` or a `date`.
//! - `value` on an object without a `value` key reads the choice element `value[x]`, i.e. the
//!   key `value` + a FHIR type name, and `as`/`ofType` filter on the type that key names.
//! - a string compares as a date or time when the other operand is one, such as a literal
//!   `@2020-01-01` or a choice element of a date/time type. Two strings compare as instants
//!   when both are full dateTimes with an offset.
//! - `resolve()` reads references without any database: contained resources and Bundle
//!   entries resolve to themselves, other literal references to `{"resourceType", "id"}`.
//!
//! Supported are paths, indexers, literals including `@` dates and times, `%variables`,
//! `$this`, `$index`, all N1 operators, and these functions:
//! - existence: `empty`, `exists`, `all`, `allTrue`, `anyTrue`, `allFalse`, `anyFalse`,
//!   `subsetOf`, `supersetOf`, `count`, `distinct`, `isDistinct`
//! - filtering and subsetting: `where`, `select`, `repeat`, `ofType`, `as`, `is`, `single`,
//!   `first`, `last`, `tail`, `skip`, `take`, `intersect`, `exclude`, `union`, `combine`
//! - conversion: `iif`, and `toX`/`convertsToX` for Boolean, Integer, Decimal, String, Date,
//!   DateTime and Time
//! - strings: `indexOf`, `substring`, `startsWith`, `endsWith`, `contains`, `upper`, `lower`,
//!   `replace`, `length`, `toChars`
//! - math: `abs`, `ceiling`, `floor`, `round`, `truncate`
//! - other: `children`, `descendants`, `trace`, `not`, and FHIR's `extension`, `hasValue` and
//!   `resolve`
//!
//! Not supported, and reported as [`FhirPathError::Parse`] or
//! [`FhirPathError::UnsupportedFunction`] when the expression is parsed: quantity literals
//! (`4 'mg'`, `1 year`) and date arithmetic with them, `aggregate()` and `$total`, `matches()`,
//! `replaceMatches()`, `now()`, `today()` and `timeOfDay()` (pass the time as a variable),
//! `type()`, `memberOf()`, `conformsTo()`, `htmlChecks()` and any function not listed above.

mod ast;
mod compare;
mod convert;
mod error;
mod eval;
mod functions;
mod item;
mod lexer;
mod math;
mod model;
mod navigation;
mod parser;
mod strings;
mod temporal;

#[cfg(test)]
mod tests;

use std::collections::HashMap;

use serde_json::Value;

pub use error::FhirPathError;

/// Values of `%name` variables, keyed by name without the `%`. A JSON `null` is the empty
/// collection and an array is a collection of its elements, so pass `%before` as `null` when a
/// resource is created. `resource`, `context` and `rootResource` default to the evaluated
/// resource, and `ucum`, `sct` and `loinc` to their code system URLs, unless given here.
pub type Variables = HashMap<String, Value>;

/// A parsed FHIRPath expression, ready to be evaluated any number of times.
#[derive(Debug, Clone, PartialEq)]
pub struct Expression {
    root: ast::Expr,
}

/// Parses `expression`, reporting syntax errors, unsupported constructs and unknown functions
/// with their character position.
pub fn parse(expression: &str) -> Result<Expression, FhirPathError> {
    Ok(Expression {
        root: parser::parse_expression(expression)?,
    })
}

impl Expression {
    /// Evaluates the expression with `resource` as the focus and as `%resource`, returning the
    /// resulting collection. A `null` resource is the empty collection.
    ///
    /// Date/time results are their string form, e.g. `"2020-01-01"` for `@2020-01-01`.
    pub fn evaluate(
        &self,
        resource: &Value,
        variables: &Variables,
    ) -> Result<Vec<Value>, FhirPathError> {
        let mut evaluator = eval::Evaluator::new(resource, variables);
        let items = evaluator.run(&self.root)?;
        Ok(items.into_iter().map(item::Item::into_value).collect())
    }

    /// FHIRPath boolean evaluation of a constraint: true, false, or empty (None).
    ///
    /// The result collection is read as N1 §4.5 Singleton Evaluation of Collections specifies:
    /// empty is `None`, a single boolean is its value, any other single item is `true`, and
    /// several items are an error.
    pub fn evaluate_bool(
        &self,
        resource: &Value,
        variables: &Variables,
    ) -> Result<Option<bool>, FhirPathError> {
        let mut evaluator = eval::Evaluator::new(resource, variables);
        let items = evaluator.run(&self.root)?;
        eval::to_boolean(items, self.root.position, "a constraint")
    }
}
