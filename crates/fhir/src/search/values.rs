//! Parsing of search parameter values: comma-separated alternatives with `\` escapes
//! (FHIR R4 search.html#escaping), comparison prefixes, dates, numbers
//! and `system|code` tokens.

use super::date::parse_date_range;
use super::filter::{DateMatch, NumberMatch, Prefix, TokenMatch};

/// Splits a value at its unescaped commas. Escapes stay in place, for [`unescape`] or
/// [`split_token`] to handle.
pub(super) fn split_alternatives(value: &str) -> Vec<String> {
    let mut alternatives = Vec::new();
    let mut current = String::new();
    let mut characters = value.chars();
    while let Some(character) = characters.next() {
        match character {
            '\\' => {
                current.push(character);
                if let Some(escaped) = characters.next() {
                    current.push(escaped);
                }
            }
            ',' => alternatives.push(std::mem::take(&mut current)),
            _ => current.push(character),
        }
    }
    alternatives.push(current);
    alternatives
}

/// Removes the `\` of `\,`, `\$`, `\|` and `\\`; any other backslash stays as written.
pub(super) fn unescape(value: &str) -> String {
    let mut output = String::with_capacity(value.len());
    let mut characters = value.chars().peekable();
    while let Some(character) = characters.next() {
        if character == '\\'
            && let Some(&next) = characters.peek()
            && matches!(next, ',' | '$' | '|' | '\\')
        {
            output.push(next);
            characters.next();
            continue;
        }
        output.push(character);
    }
    output
}

/// Splits a value into its alternatives and unescapes each.
pub(super) fn plain_alternatives(value: &str) -> Vec<String> {
    split_alternatives(value)
        .iter()
        .map(|alternative| unescape(alternative))
        .collect()
}

/// A token alternative: a plain code, or one of the forms with a system.
pub(super) enum TokenValue {
    Code(String),
    WithSystem(TokenMatch),
}

/// Splits `system|code` at its first unescaped `|` (FHIR R4 search.html#token).
pub(super) fn split_token(alternative: &str) -> TokenValue {
    let mut escaped = false;
    let mut bar = None;
    for (index, character) in alternative.char_indices() {
        if escaped {
            escaped = false;
        } else if character == '\\' {
            escaped = true;
        } else if character == '|' {
            bar = Some(index);
            break;
        }
    }
    let Some(bar) = bar else {
        return TokenValue::Code(unescape(alternative));
    };
    let system = unescape(&alternative[..bar]);
    let code = unescape(&alternative[bar + 1..]);
    TokenValue::WithSystem(match (system.is_empty(), code.is_empty()) {
        (true, _) => TokenMatch::CodeWithoutSystem(code),
        (false, true) => TokenMatch::System(system),
        (false, false) => TokenMatch::SystemCode { system, code },
    })
}

/// The reason a prefixed value could not be parsed.
pub(super) enum ValueError {
    /// The value is malformed.
    Invalid,
    /// The prefix is valid FHIR but not implemented (`ap`).
    UnsupportedPrefix(&'static str),
}

/// Splits a leading comparison prefix off a date or number; none means `eq`.
fn split_prefix(value: &str) -> Result<(Prefix, &str), ValueError> {
    const PREFIXES: &[(&str, Prefix)] = &[
        ("eq", Prefix::Eq),
        ("ne", Prefix::Ne),
        ("gt", Prefix::Gt),
        ("lt", Prefix::Lt),
        ("ge", Prefix::Ge),
        ("le", Prefix::Le),
        ("sa", Prefix::Sa),
        ("eb", Prefix::Eb),
    ];
    if value.starts_with("ap") {
        // `ap` (approximately) leaves the tolerance to the server; medgate defines none.
        return Err(ValueError::UnsupportedPrefix("ap"));
    }
    for (text, prefix) in PREFIXES {
        if let Some(rest) = value.strip_prefix(text) {
            return Ok((*prefix, rest));
        }
    }
    Ok((Prefix::Eq, value))
}

pub(super) fn parse_date_match(value: &str) -> Result<DateMatch, ValueError> {
    let (prefix, date) = split_prefix(value)?;
    let range = parse_date_range(date).ok_or(ValueError::Invalid)?;
    Ok(DateMatch {
        prefix,
        low: range.low,
        high: range.high,
    })
}

/// Parses a number with its prefix. The implied range is half a unit of the last digit
/// either side: `100` is `[99.5, 100.5)`, `100.0` is `[99.95, 100.05)` and `1e2`, with one
/// significant digit, is `[50, 150)` (FHIR R4 search.html#number).
pub(super) fn parse_number_match(value: &str) -> Result<NumberMatch, ValueError> {
    let (prefix, text) = split_prefix(value)?;
    let well_formed = !text.is_empty()
        && text
            .bytes()
            .all(|byte| byte.is_ascii_digit() || matches!(byte, b'.' | b'-' | b'+' | b'e' | b'E'));
    if !well_formed {
        return Err(ValueError::Invalid);
    }
    let number: f64 = text.parse().map_err(|_| ValueError::Invalid)?;
    if !number.is_finite() {
        return Err(ValueError::Invalid);
    }
    let (mantissa, exponent) = match text.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => (
            mantissa,
            exponent.parse::<i32>().map_err(|_| ValueError::Invalid)?,
        ),
        None => (text, 0),
    };
    let decimals = mantissa
        .split_once('.')
        .map_or(0, |(_, fraction)| fraction.len() as i32);
    let half_unit = 0.5 * 10_f64.powi(exponent - decimals);
    Ok(NumberMatch {
        prefix,
        value: number,
        low: number - half_unit,
        high: number + half_unit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commas_split_unless_escaped() {
        assert_eq!(split_alternatives("a,b\\,c"), ["a", "b\\,c"]);
        assert_eq!(plain_alternatives("a,b\\,c,d\\\\"), ["a", "b,c", "d\\"]);
        assert_eq!(plain_alternatives(""), [""]);
    }

    #[test]
    fn token_forms() {
        let system = |text: &str| match split_token(text) {
            TokenValue::WithSystem(token) => Some(token),
            TokenValue::Code(_) => None,
        };
        assert!(matches!(split_token("abc"), TokenValue::Code(code) if code == "abc"));
        assert!(matches!(split_token("a\\|b"), TokenValue::Code(code) if code == "a|b"));
        assert_eq!(
            system("http://loinc.org|1234-5"),
            Some(TokenMatch::SystemCode {
                system: "http://loinc.org".into(),
                code: "1234-5".into()
            })
        );
        assert_eq!(
            system("|x"),
            Some(TokenMatch::CodeWithoutSystem("x".into()))
        );
        assert_eq!(
            system("http://loinc.org|"),
            Some(TokenMatch::System("http://loinc.org".into()))
        );
    }

    #[test]
    fn number_precision_ranges() {
        let range = |text: &str| {
            let parsed = parse_number_match(text).unwrap_or_else(|_| panic!("{text} parses"));
            (parsed.low, parsed.high)
        };
        assert_eq!(range("100"), (99.5, 100.5));
        assert_eq!(range("1e2"), (50.0, 150.0));
        let (low, high) = range("100.0");
        assert!((low - 99.95).abs() < 1e-9, "{low}");
        assert!((high - 100.05).abs() < 1e-9, "{high}");
        let parsed = parse_number_match("gt-2.5").unwrap_or_else(|_| panic!("gt-2.5 parses"));
        assert_eq!(parsed.prefix, Prefix::Gt);
        assert_eq!(parsed.value, -2.5);
    }

    #[test]
    fn malformed_numbers_rejected() {
        for text in ["", "abc", "1,5", "gt", "NaN", "inf", "1e"] {
            assert!(
                matches!(parse_number_match(text), Err(ValueError::Invalid)),
                "{text:?}"
            );
        }
        assert!(matches!(
            parse_number_match("ap5"),
            Err(ValueError::UnsupportedPrefix("ap"))
        ));
    }

    #[test]
    fn date_prefixes() {
        let parsed = parse_date_match("ge2020-05").unwrap_or_else(|_| panic!("parses"));
        assert_eq!(parsed.prefix, Prefix::Ge);
        assert_eq!(parsed.low, "2020-05-01T00:00:00.000Z");
        assert!(matches!(
            parse_date_match("2020-13"),
            Err(ValueError::Invalid)
        ));
        assert!(matches!(
            parse_date_match("xx2020"),
            Err(ValueError::Invalid)
        ));
    }
}
