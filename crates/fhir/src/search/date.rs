//! Dates as ranges of instants. FHIR compares dates as the ranges their precision implies
//! (FHIR R4 search.html#date): `2020` is the whole year, `2020-05-01T10:00` a whole minute.
//! Both ends are UTC instants with milliseconds in one fixed-width text form, so comparing
//! the texts byte by byte orders them in time, in SQL and in Rust alike.

use chrono::{
    DateTime, Duration, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, TimeZone,
    Utc,
};

/// The earliest instant the index stores: the open start of a Period without `start`.
pub const MIN_INSTANT: &str = "0001-01-01T00:00:00.000Z";
/// The latest instant the index stores: the open end of a Period without `end`.
pub const MAX_INSTANT: &str = "9999-12-31T23:59:59.999Z";

/// A closed range of instants, both ends in the normalized text form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateRange {
    pub low: String,
    pub high: String,
}

/// Parses a FHIR `date`, `dateTime` or `instant` (`2020`, `2020-05`, `2020-05-01`,
/// `2020-05-01T10:00`, `2020-05-01T10:00:00.5+02:00`) into the range its precision covers.
///
/// NOTE: a time without a zone offset is taken as UTC, and so is a date, whose day then runs
/// from midnight to midnight UTC. FHIR leaves such values to the server's time zone.
pub fn parse_date_range(text: &str) -> Option<DateRange> {
    let (date_part, time_part) = match text.split_once('T') {
        Some((date, time)) => (date, Some(time)),
        None => (text, None),
    };
    let (start_date, end_date) = parse_date_part(date_part)?;
    let Some(time_part) = time_part else {
        let low = Utc.from_utc_datetime(&start_date.and_time(NaiveTime::MIN));
        let high = Utc.from_utc_datetime(&end_date.and_time(NaiveTime::MIN)) + Duration::days(1)
            - Duration::milliseconds(1);
        return Some(range(low, high));
    };

    // A time needs a full date before it.
    if date_part.len() != 10 {
        return None;
    }
    let (clock, offset) = split_offset(time_part)?;
    let (time, span) = parse_clock(clock)?;
    let local = NaiveDateTime::new(start_date, time);
    let low = offset
        .from_local_datetime(&local)
        .single()?
        .with_timezone(&Utc);
    let high = low + span - Duration::milliseconds(1);
    Some(range(low, high.max(low)))
}

/// Formats an instant in the normalized text form, for values that already are instants.
pub fn format_instant(at: DateTime<Utc>) -> String {
    clamp(at.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// Rewrites a full instant such as `meta.lastUpdated` in the normalized text form, or
/// returns `None` when the text is not an instant with seconds and a zone.
pub fn normalize_instant(text: &str) -> Option<String> {
    let parsed = DateTime::parse_from_rfc3339(text).ok()?;
    Some(format_instant(parsed.with_timezone(&Utc)))
}

fn range(low: DateTime<Utc>, high: DateTime<Utc>) -> DateRange {
    DateRange {
        low: format_instant(low),
        high: format_instant(high),
    }
}

/// Keeps an instant inside the years 0001 to 9999, which the fixed-width form can hold. A
/// zone offset can push the ends of year 1 or year 9999 outside, and chrono then writes a
/// year 0, a sign or a fifth digit.
fn clamp(text: String) -> String {
    let fixed_width = text.len() == MIN_INSTANT.len();
    if text.starts_with('-') || (fixed_width && text.as_str() < MIN_INSTANT) {
        return MIN_INSTANT.to_string();
    }
    if text.starts_with('+') || !fixed_width {
        return MAX_INSTANT.to_string();
    }
    text
}

/// Parses `YYYY`, `YYYY-MM` or `YYYY-MM-DD` into its first and last day.
fn parse_date_part(text: &str) -> Option<(NaiveDate, NaiveDate)> {
    let parts: Vec<&str> = text.split('-').collect();
    let number = |part: &str, digits: usize| -> Option<u32> {
        if part.len() != digits || !part.bytes().all(|byte| byte.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let year = i32::try_from(number(parts.first()?, 4)?).ok()?;
    if year == 0 {
        return None;
    }
    match parts.len() {
        1 => Some((
            NaiveDate::from_ymd_opt(year, 1, 1)?,
            NaiveDate::from_ymd_opt(year, 12, 31)?,
        )),
        2 => {
            let month = number(parts[1], 2)?;
            let first = NaiveDate::from_ymd_opt(year, month, 1)?;
            let next_month = if month == 12 {
                NaiveDate::from_ymd_opt(year + 1, 1, 1)
            } else {
                NaiveDate::from_ymd_opt(year, month + 1, 1)
            };
            let last = match next_month {
                Some(next) => next.pred_opt()?,
                None => NaiveDate::from_ymd_opt(year, 12, 31)?,
            };
            Some((first, last))
        }
        3 => {
            let day = NaiveDate::from_ymd_opt(year, number(parts[1], 2)?, number(parts[2], 2)?)?;
            Some((day, day))
        }
        _ => None,
    }
}

/// Splits `10:00:00+02:00` into the clock time and its offset; no offset means UTC.
fn split_offset(text: &str) -> Option<(&str, FixedOffset)> {
    if let Some(clock) = text.strip_suffix('Z') {
        return Some((clock, FixedOffset::east_opt(0)?));
    }
    let Some(sign_at) = text.rfind(['+', '-']) else {
        return Some((text, FixedOffset::east_opt(0)?));
    };
    let (clock, offset) = text.split_at(sign_at);
    let sign = if offset.starts_with('-') { -1 } else { 1 };
    let (hours, minutes) = offset[1..].split_once(':')?;
    if hours.len() != 2 || minutes.len() != 2 {
        return None;
    }
    let hours: i32 = hours.parse().ok()?;
    let minutes: i32 = minutes.parse().ok()?;
    if hours > 14 || minutes > 59 {
        return None;
    }
    Some((
        clock,
        FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60))?,
    ))
}

/// Parses `hh:mm`, `hh:mm:ss` or `hh:mm:ss.fff…` into the time and the span its precision
/// covers: a minute, a second, or a tenth, hundredth or thousandth of one.
fn parse_clock(text: &str) -> Option<(NaiveTime, Duration)> {
    let digits = |part: &str| part.len() == 2 && part.bytes().all(|byte| byte.is_ascii_digit());
    let parts: Vec<&str> = text.split(':').collect();
    match parts.as_slice() {
        [hours, minutes] if digits(hours) && digits(minutes) => Some((
            NaiveTime::from_hms_opt(hours.parse().ok()?, minutes.parse().ok()?, 0)?,
            Duration::minutes(1),
        )),
        [hours, minutes, seconds] if digits(hours) && digits(minutes) => {
            let (whole, fraction) = match seconds.split_once('.') {
                Some((whole, fraction)) => (whole, Some(fraction)),
                None => (*seconds, None),
            };
            if !digits(whole) {
                return None;
            }
            let time = NaiveTime::from_hms_opt(
                hours.parse().ok()?,
                minutes.parse().ok()?,
                whole.parse().ok()?,
            )?;
            let Some(fraction) = fraction else {
                return Some((time, Duration::seconds(1)));
            };
            if fraction.is_empty() || !fraction.bytes().all(|byte| byte.is_ascii_digit()) {
                return None;
            }
            // Milliseconds are the index's precision, so finer digits are cut off.
            let millis_digits = &fraction[..fraction.len().min(3)];
            let scale = 10_i64.pow(3 - millis_digits.len() as u32);
            let millis: i64 = millis_digits.parse::<i64>().ok()? * scale;
            let time = time + Duration::milliseconds(millis);
            Some((time, Duration::milliseconds(scale)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds(text: &str) -> (String, String) {
        let range = parse_date_range(text).unwrap_or_else(|| panic!("{text} parses"));
        (range.low, range.high)
    }

    #[test]
    fn partial_dates_cover_their_precision() {
        let cases = [
            (
                "2020",
                "2020-01-01T00:00:00.000Z",
                "2020-12-31T23:59:59.999Z",
            ),
            (
                "2020-02",
                "2020-02-01T00:00:00.000Z",
                "2020-02-29T23:59:59.999Z",
            ),
            (
                "2020-12",
                "2020-12-01T00:00:00.000Z",
                "2020-12-31T23:59:59.999Z",
            ),
            (
                "2020-05-01",
                "2020-05-01T00:00:00.000Z",
                "2020-05-01T23:59:59.999Z",
            ),
            (
                "2020-05-01T10:00",
                "2020-05-01T10:00:00.000Z",
                "2020-05-01T10:00:59.999Z",
            ),
            (
                "2020-05-01T10:00:05Z",
                "2020-05-01T10:00:05.000Z",
                "2020-05-01T10:00:05.999Z",
            ),
            (
                "2020-05-01T10:00:05.5Z",
                "2020-05-01T10:00:05.500Z",
                "2020-05-01T10:00:05.599Z",
            ),
            (
                "2020-05-01T10:00:05.123456Z",
                "2020-05-01T10:00:05.123Z",
                "2020-05-01T10:00:05.123Z",
            ),
        ];
        for (text, low, high) in cases {
            assert_eq!(bounds(text), (low.to_string(), high.to_string()), "{text}");
        }
    }

    #[test]
    fn offsets_become_utc() {
        assert_eq!(
            bounds("2020-05-01T01:30:00+02:00").0,
            "2020-04-30T23:30:00.000Z"
        );
        assert_eq!(
            bounds("2020-05-01T22:00:00-05:00").0,
            "2020-05-02T03:00:00.000Z"
        );
    }

    #[test]
    fn ends_of_the_calendar_clamp() {
        assert_eq!(bounds("0001-01-01T00:30:00+01:00").0, MIN_INSTANT);
        assert_eq!(bounds("9999-12-31T23:30:00-01:00").1, MAX_INSTANT);
    }

    #[test]
    fn malformed_dates_rejected() {
        for text in [
            "",
            "20",
            "2020-1",
            "2020-13",
            "2020-02-30",
            "2020-05-01T",
            "2020-05-01T25:00",
            "2020-05-01T10",
            "2020-05-01T10:00:00.",
            "2020-05-01T10:00:00+2",
            "yesterday",
            "0000",
        ] {
            assert!(parse_date_range(text).is_none(), "{text:?}");
        }
    }

    #[test]
    fn instants_normalize() {
        assert_eq!(
            normalize_instant("2025-01-01T01:00:00+01:00").as_deref(),
            Some("2025-01-01T00:00:00.000Z")
        );
        assert_eq!(normalize_instant("2025-01-01"), None);
    }
}
