//! The items of FHIRPath collections: JSON values plus the type information JSON does not carry.

use std::borrow::Cow;

use serde_json::{Number as JsonNumber, Value};

use super::temporal::{Temporal, TemporalKind};

/// Type information about an item beyond its JSON shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tag {
    /// Only the JSON shape is known: boolean, number, string, or an object that may name its
    /// `resourceType`.
    Json,
    /// A FHIRPath `System.Date`, `System.DateTime` or `System.Time` from a literal or a
    /// conversion. The JSON value is its string form.
    System(TemporalKind),
    /// A FHIR type named by the key of a choice element, e.g. `dateTime` for `onsetDateTime`
    /// (the "Choice of Data Types" rule of FHIR R4 JSON).
    Fhir(&'static str),
}

/// One item of a collection. Values read from the input are borrowed, computed values are owned.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Item<'a> {
    pub(super) value: Cow<'a, Value>,
    pub(super) tag: Tag,
}

/// A FHIRPath `Integer` or `Decimal`.
///
/// NOTE: decimals are `f64`, so `0.1 + 0.2 = 0.3` is false, unlike FHIRPath's exact decimals.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Number {
    Integer(i64),
    Decimal(f64),
}

impl Number {
    pub(super) fn as_f64(self) -> f64 {
        match self {
            // Precision loss above 2^53 is accepted: FHIR integers are 32-bit.
            Self::Integer(integer) => integer as f64,
            Self::Decimal(decimal) => decimal,
        }
    }
}

impl<'a> Item<'a> {
    pub(super) fn borrowed(value: &'a Value) -> Self {
        Self {
            value: Cow::Borrowed(value),
            tag: Tag::Json,
        }
    }

    pub(super) fn owned(value: Value) -> Self {
        Self {
            value: Cow::Owned(value),
            tag: Tag::Json,
        }
    }

    pub(super) fn boolean(value: bool) -> Self {
        Self::owned(Value::Bool(value))
    }

    pub(super) fn integer(value: i64) -> Self {
        Self::owned(Value::from(value))
    }

    pub(super) fn string(value: impl Into<String>) -> Self {
        Self::owned(Value::String(value.into()))
    }

    pub(super) fn temporal(kind: TemporalKind, text: impl Into<String>) -> Self {
        Self {
            value: Cow::Owned(Value::String(text.into())),
            tag: Tag::System(kind),
        }
    }

    /// Creates the item for a number, or `None` for a decimal that JSON cannot represent (NaN,
    /// infinity).
    pub(super) fn number(value: Number) -> Option<Self> {
        match value {
            Number::Integer(integer) => Some(Self::integer(integer)),
            Number::Decimal(decimal) => {
                JsonNumber::from_f64(decimal).map(|number| Self::owned(Value::Number(number)))
            }
        }
    }

    pub(super) fn as_bool(&self) -> Option<bool> {
        self.value.as_bool()
    }

    pub(super) fn as_str(&self) -> Option<&str> {
        self.value.as_str()
    }

    pub(super) fn as_number(&self) -> Option<Number> {
        let Value::Number(number) = self.value.as_ref() else {
            return None;
        };
        match number.as_i64() {
            Some(integer) => Some(Number::Integer(integer)),
            None => number.as_f64().map(Number::Decimal),
        }
    }

    pub(super) fn as_integer(&self) -> Option<i64> {
        match self.as_number()? {
            Number::Integer(integer) => Some(integer),
            Number::Decimal(_) => None,
        }
    }

    /// Returns whether the item is a primitive (boolean, number or string), not an object.
    pub(super) fn is_primitive(&self) -> bool {
        matches!(
            self.value.as_ref(),
            Value::Bool(_) | Value::Number(_) | Value::String(_)
        )
    }

    /// Returns the date/time kind that the item's type implies, for typed literals, conversion
    /// results and choice elements of a date/time type. Untyped strings have none.
    pub(super) fn temporal_kind(&self) -> Option<TemporalKind> {
        match self.tag {
            Tag::System(kind) => Some(kind),
            Tag::Fhir("date") => Some(TemporalKind::Date),
            Tag::Fhir("dateTime" | "instant") => Some(TemporalKind::DateTime),
            Tag::Fhir("time") => Some(TemporalKind::Time),
            _ => None,
        }
    }

    /// Parses the item's string as the given kind. Dates are read as dateTimes, so that a date
    /// compares with a dateTime as N1 §6.2 requires by converting Date to DateTime.
    pub(super) fn parse_temporal(&self, kind: TemporalKind) -> Option<Temporal> {
        let text = self.as_str()?;
        match kind {
            TemporalKind::Time => Temporal::parse_time(text),
            TemporalKind::Date | TemporalKind::DateTime => Temporal::parse_date_time(text),
        }
    }

    pub(super) fn into_value(self) -> Value {
        self.value.into_owned()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn number_kinds_follow_json() {
        let integer = json!(3);
        let decimal = json!(3.5);
        let whole_decimal = json!(3.0);
        assert_eq!(
            Item::borrowed(&integer).as_number(),
            Some(Number::Integer(3))
        );
        assert_eq!(
            Item::borrowed(&decimal).as_number(),
            Some(Number::Decimal(3.5))
        );
        assert_eq!(
            Item::borrowed(&whole_decimal).as_number(),
            Some(Number::Decimal(3.0))
        );
        assert_eq!(Item::string("3").as_number(), None);
    }

    #[test]
    fn non_finite_decimal_has_no_item() {
        assert!(Item::number(Number::Decimal(f64::NAN)).is_none());
        assert!(Item::number(Number::Decimal(f64::INFINITY)).is_none());
        assert!(Item::number(Number::Decimal(1.5)).is_some());
    }

    #[test]
    fn temporal_kind_from_tags() {
        assert_eq!(Item::string("2020").temporal_kind(), None);
        assert_eq!(
            Item::temporal(TemporalKind::Date, "2020").temporal_kind(),
            Some(TemporalKind::Date)
        );
        let instant = Item {
            value: Cow::Owned(json!("2020-01-01T00:00:00Z")),
            tag: Tag::Fhir("instant"),
        };
        assert_eq!(instant.temporal_kind(), Some(TemporalKind::DateTime));
    }
}
