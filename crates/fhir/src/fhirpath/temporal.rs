//! Dates, dateTimes and times kept at the precision they were written with, and their comparison.
//!
//! FHIRPath N1 §6.1.1 compares date/time values precision by precision, from the year down: the
//! first component that differs decides, and when one value stops before the other the result is
//! unknown (empty). Seconds and their fraction form a single precision. Values that both carry a
//! timezone offset are normalized to UTC first. When only one of them carries an offset they are
//! compared as written, because N1 leaves a default offset to the implementation.

use std::cmp::Ordering;

/// The FHIRPath type of a date/time literal or conversion result (N1 §4.1 Literals).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TemporalKind {
    Date,
    DateTime,
    Time,
}

/// The outcome of comparing two date/time values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TemporalOrdering {
    Ordered(Ordering),
    /// The values agree up to the coarser precision, so their order is unknown.
    Indeterminate,
    /// A time of day compared with a date or dateTime.
    Incomparable,
}

const NANOS_PER_SECOND: i64 = 1_000_000_000;

/// A parsed date, dateTime or time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Temporal {
    is_time: bool,
    /// Year, month, day, hour, minute and nanoseconds of the minute for a date or dateTime, or
    /// hour, minute and nanoseconds of the minute for a time. Only the first `precision` are set.
    components: [i64; 6],
    precision: usize,
    offset_minutes: Option<i64>,
}

impl Temporal {
    /// Parses a FHIR `date`/`dateTime`/`instant` or a FHIRPath date/dateTime literal body:
    /// `YYYY[-MM[-DD]][T[hh[:mm[:ss[.fff]]]][Z|+hh:mm|-hh:mm]]`. A time needs a full date.
    pub(super) fn parse_date_time(text: &str) -> Option<Temporal> {
        let mut cursor = Cursor::new(text);
        let mut value = Temporal {
            is_time: false,
            components: [0; 6],
            precision: 0,
            offset_minutes: None,
        };

        let year = cursor.digits(4)?;
        value.push(year);
        if cursor.eat(b'-') {
            let month = cursor.digits(2)?;
            if !(1..=12).contains(&month) {
                return None;
            }
            value.push(month);
            if cursor.eat(b'-') {
                let day = cursor.digits(2)?;
                if day < 1 || day > days_in_month(year, month) {
                    return None;
                }
                value.push(day);
            }
        }

        if cursor.eat(b'T') && !cursor.at_end() {
            if value.precision != 3 {
                return None;
            }
            parse_clock(&mut cursor, &mut value)?;
            value.offset_minutes = parse_offset(&mut cursor)?;
        }
        cursor.at_end().then_some(value)
    }

    /// Parses a FHIR `time` or a FHIRPath time literal body: `hh[:mm[:ss[.fff]]]`.
    pub(super) fn parse_time(text: &str) -> Option<Temporal> {
        let mut cursor = Cursor::new(text);
        let mut value = Temporal {
            is_time: true,
            components: [0; 6],
            precision: 0,
            offset_minutes: None,
        };
        parse_clock(&mut cursor, &mut value)?;
        cursor.at_end().then_some(value)
    }

    /// Parses `text` as the given kind. A date parses only without a time part.
    pub(super) fn parse(text: &str, kind: TemporalKind) -> Option<Temporal> {
        match kind {
            TemporalKind::Time => Self::parse_time(text),
            TemporalKind::DateTime => Self::parse_date_time(text),
            TemporalKind::Date => Self::parse_date_time(text).filter(|value| value.precision <= 3),
        }
    }

    pub(super) fn is_time(&self) -> bool {
        self.is_time
    }

    /// Returns whether the value is a dateTime to the second with an offset, as FHIR `instant`
    /// requires.
    pub(super) fn is_instant(&self) -> bool {
        !self.is_time && self.precision == 6 && self.offset_minutes.is_some()
    }

    fn push(&mut self, component: i64) {
        self.components[self.precision] = component;
        self.precision += 1;
    }

    /// Compares by N1 §6.2: component by component, a difference decides, and a value that
    /// stops at a coarser precision than the other leaves the order unknown.
    pub(super) fn compare(&self, other: &Temporal) -> TemporalOrdering {
        if self.is_time != other.is_time {
            return TemporalOrdering::Incomparable;
        }
        let (left, right) = match (self.to_utc(), other.to_utc()) {
            (Some(left), Some(right)) => (left, right),
            _ => (*self, *other),
        };
        let common = left.precision.min(right.precision);
        for index in 0..common {
            let ordering = left.components[index].cmp(&right.components[index]);
            if ordering != Ordering::Equal {
                return TemporalOrdering::Ordered(ordering);
            }
        }
        if left.precision == right.precision {
            TemporalOrdering::Ordered(Ordering::Equal)
        } else {
            TemporalOrdering::Indeterminate
        }
    }

    /// Converts a dateTime with an offset and minutes to the same instant at offset zero.
    fn to_utc(self) -> Option<Temporal> {
        let offset = self.offset_minutes?;
        if self.is_time || self.precision < 5 {
            return None;
        }
        let [year, month, day, hour, minute, _] = self.components;
        let total_minutes = days_from_civil(year, month, day) * 1440 + hour * 60 + minute - offset;
        let (year, month, day) = civil_from_days(total_minutes.div_euclid(1440));
        let minute_of_day = total_minutes.rem_euclid(1440);

        let mut normalized = self;
        normalized.components[..5].copy_from_slice(&[
            year,
            month,
            day,
            minute_of_day / 60,
            minute_of_day % 60,
        ]);
        normalized.offset_minutes = Some(0);
        Some(normalized)
    }
}

/// Reads `hh[:mm[:ss[.fff]]]` into the next components of `value`.
fn parse_clock(cursor: &mut Cursor, value: &mut Temporal) -> Option<()> {
    let hour = cursor.digits(2)?;
    if hour > 23 {
        return None;
    }
    value.push(hour);
    if !cursor.eat(b':') {
        return Some(());
    }

    let minute = cursor.digits(2)?;
    if minute > 59 {
        return None;
    }
    value.push(minute);
    if !cursor.eat(b':') {
        return Some(());
    }

    let second = cursor.digits(2)?;
    if second > 59 {
        return None;
    }
    let mut nanos = second * NANOS_PER_SECOND;
    if cursor.eat(b'.') {
        let fraction = cursor.take_digits();
        if fraction.is_empty() {
            return None;
        }
        // Digits past nanoseconds cannot change any comparison FHIR data needs.
        let mut scale = NANOS_PER_SECOND / 10;
        for digit in fraction.bytes().take(9) {
            nanos += i64::from(digit - b'0') * scale;
            scale /= 10;
        }
    }
    value.push(nanos);
    Some(())
}

/// Reads an optional `Z`, `+hh:mm` or `-hh:mm`; `None` when one is present but malformed.
fn parse_offset(cursor: &mut Cursor) -> Option<Option<i64>> {
    if cursor.eat(b'Z') {
        return Some(Some(0));
    }
    let sign = if cursor.eat(b'+') {
        1
    } else if cursor.eat(b'-') {
        -1
    } else {
        return Some(None);
    };
    let hours = cursor.digits(2)?;
    if !cursor.eat(b':') {
        return None;
    }
    let minutes = cursor.digits(2)?;
    if hours > 14 || minutes > 59 {
        return None;
    }
    Some(Some(sign * (hours * 60 + minutes)))
}

struct Cursor<'t> {
    bytes: &'t [u8],
    position: usize,
}

impl<'t> Cursor<'t> {
    fn new(text: &'t str) -> Self {
        Self {
            bytes: text.as_bytes(),
            position: 0,
        }
    }

    fn at_end(&self) -> bool {
        self.position == self.bytes.len()
    }

    fn eat(&mut self, byte: u8) -> bool {
        if self.bytes.get(self.position) == Some(&byte) {
            self.position += 1;
            true
        } else {
            false
        }
    }

    /// Reads exactly `count` ASCII digits as a number.
    fn digits(&mut self, count: usize) -> Option<i64> {
        let end = self.position.checked_add(count)?;
        let slice = self.bytes.get(self.position..end)?;
        if !slice.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.position = end;
        Some(
            slice
                .iter()
                .fold(0, |number, digit| number * 10 + i64::from(digit - b'0')),
        )
    }

    fn take_digits(&mut self) -> &'t str {
        let start = self.position;
        while self
            .bytes
            .get(self.position)
            .is_some_and(u8::is_ascii_digit)
        {
            self.position += 1;
        }
        // The slice contains ASCII digits only, so it is valid UTF-8.
        std::str::from_utf8(&self.bytes[start..self.position]).unwrap_or_default()
    }
}

fn is_leap_year(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Converts days since 1970-01-01 back to a date, inverting [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use TemporalOrdering::{Incomparable, Indeterminate, Ordered};

    fn date_time(text: &str) -> Temporal {
        Temporal::parse_date_time(text).unwrap_or_else(|| panic!("{text} should parse"))
    }

    #[test]
    fn parse_accepts_fhir_forms() {
        for text in [
            "2020",
            "2020-02",
            "2020-02-29",
            "2020-02-29T",
            "2020-02-29T10",
            "2020-02-29T10:30",
            "2020-02-29T10:30:15",
            "2020-02-29T10:30:15.123",
            "2020-02-29T10:30:15.123456789123Z",
            "2020-02-29T10:30:15+05:30",
            "2020-02-29T10:30:15-14:00",
        ] {
            assert!(Temporal::parse_date_time(text).is_some(), "{text}");
        }
    }

    #[test]
    fn parse_rejects_malformed_values() {
        for text in [
            "",
            "20",
            "2020-2",
            "2020-13",
            "2021-02-29",
            "2020-04-31",
            "2020-01T10:00",
            "2020-01-01T24:00",
            "2020-01-01T10:60",
            "2020-01-01T10:00:60",
            "2020-01-01T10:00:00.",
            "2020-01-01T10:00:00+1",
            "2020-01-01T10:00:00+15:00",
            "2020-01-01 10:00",
            "2020-01-01T10:00:00Zx",
            "final",
        ] {
            assert!(Temporal::parse_date_time(text).is_none(), "{text}");
        }
    }

    #[test]
    fn parse_date_rejects_time_part() {
        assert!(Temporal::parse("2020-01-01", TemporalKind::Date).is_some());
        assert!(Temporal::parse("2020-01-01T10:00", TemporalKind::Date).is_none());
    }

    #[test]
    fn parse_time_forms() {
        for text in ["10", "10:30", "10:30:15", "10:30:15.5"] {
            assert!(Temporal::parse_time(text).is_some(), "{text}");
        }
        for text in ["", "1", "25:00", "10:30Z", "T10:30"] {
            assert!(Temporal::parse_time(text).is_none(), "{text}");
        }
    }

    #[test]
    fn compare_same_precision() {
        let cases = [
            ("2020-01-01", "2020-01-02", Ordered(Ordering::Less)),
            ("2020-01-01", "2020-01-01", Ordered(Ordering::Equal)),
            ("2021", "2020", Ordered(Ordering::Greater)),
            (
                "2020-01-01T10:00:00.5Z",
                "2020-01-01T10:00:00.500Z",
                Ordered(Ordering::Equal),
            ),
            (
                "2020-01-01T10:00:00Z",
                "2020-01-01T10:00:01Z",
                Ordered(Ordering::Less),
            ),
        ];
        for (left, right, expected) in cases {
            assert_eq!(
                date_time(left).compare(&date_time(right)),
                expected,
                "{left} vs {right}"
            );
        }
    }

    #[test]
    fn compare_different_precision() {
        let cases = [
            ("2020", "2020-01", Indeterminate),
            ("2020", "2021-01", Ordered(Ordering::Less)),
            ("2020-01-01", "2020-01-01T10:00:00Z", Indeterminate),
            (
                "2020-01-02",
                "2020-01-01T10:00:00Z",
                Ordered(Ordering::Greater),
            ),
            ("2020-01-01T10:00", "2020-01-01T10:00:00", Indeterminate),
        ];
        for (left, right, expected) in cases {
            assert_eq!(
                date_time(left).compare(&date_time(right)),
                expected,
                "{left} vs {right}"
            );
        }
    }

    #[test]
    fn compare_normalizes_offsets() {
        let utc = date_time("2020-01-01T00:30:00Z");
        let ahead = date_time("2020-01-01T01:30:00+01:00");
        let behind = date_time("2019-12-31T19:30:00-05:00");
        assert_eq!(utc.compare(&ahead), Ordered(Ordering::Equal));
        assert_eq!(utc.compare(&behind), Ordered(Ordering::Equal));

        // 00:30 at +01:00 on New Year's Day is 23:30 UTC on the last day of the old year.
        let year_boundary = date_time("2021-01-01T00:30:00+01:00");
        assert_eq!(
            year_boundary.compare(&date_time("2020-12-31T23:00:00Z")),
            Ordered(Ordering::Greater)
        );
        assert_eq!(
            year_boundary.compare(&date_time("2020-12-31T23:45:00Z")),
            Ordered(Ordering::Less)
        );
    }

    #[test]
    fn compare_without_offset_uses_written_values() {
        let local = date_time("2020-01-01T10:00:00");
        let zoned = date_time("2020-01-01T10:00:00+05:00");
        assert_eq!(local.compare(&zoned), Ordered(Ordering::Equal));
    }

    #[test]
    fn compare_time_with_date_is_incomparable() {
        let time = Temporal::parse_time("10:00").unwrap();
        assert_eq!(time.compare(&date_time("2020")), Incomparable);
        assert!(time.is_time());
    }

    #[test]
    fn civil_round_trip() {
        for (year, month, day) in [(1970, 1, 1), (2000, 2, 29), (1900, 3, 1), (2024, 12, 31)] {
            let days = days_from_civil(year, month, day);
            assert_eq!(civil_from_days(days), (year, month, day));
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }
}
