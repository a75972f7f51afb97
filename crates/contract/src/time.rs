//! The one timestamp encoding of the queues.
//!
//! Every time column holds RFC 3339 UTC text with exactly nine fraction digits and a
//! literal `Z`: `2026-06-16T12:34:56.123456789Z`. Fixed width is deliberate: the text
//! then sorts exactly like the instant it names, so `deliver_after <= ?` in SQL is a
//! correct time comparison (the Go system trimmed fraction digits, and `.` sorting
//! before `Z` made such comparisons wrong). Parsing accepts any RFC 3339 form (any
//! fraction length, numeric offsets) and converts it to UTC.

use std::fmt;
use std::str::FromStr;

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

/// A text that is not an RFC 3339 timestamp the queues can hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid timestamp {value:?}: {reason}")]
pub struct TimestampError {
    pub value: String,
    pub reason: String,
}

/// An instant in UTC with nanosecond precision.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

const CANONICAL: &[time::format_description::BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z");

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        Self(OffsetDateTime::now_utc())
    }

    /// The instant `nanos` nanoseconds after the Unix epoch.
    pub fn from_unix_nanos(nanos: i128) -> Result<Self, TimestampError> {
        let t = OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|e| TimestampError {
            value: nanos.to_string(),
            reason: e.to_string(),
        })?;
        Self::clamp_year(t)
    }

    pub fn unix_nanos(self) -> i128 {
        self.0.unix_timestamp_nanos()
    }

    /// Parses any RFC 3339 timestamp (years 0000–9999) and converts it to UTC.
    pub fn parse(s: &str) -> Result<Self, TimestampError> {
        let t = OffsetDateTime::parse(s, &Rfc3339).map_err(|e| TimestampError {
            value: s.chars().take(64).collect(),
            reason: e.to_string(),
        })?;
        Self::clamp_year(t.to_offset(UtcOffset::UTC))
    }

    /// The canonical fixed-width text form.
    pub fn to_canonical(self) -> String {
        // Formatting can only fail for years outside 0..=9999, which the constructors
        // refuse.
        self.0
            .format(CANONICAL)
            .unwrap_or_else(|_| "0000-01-01T00:00:00.000000000Z".to_owned())
    }

    /// `self + d`, saturating at the representable range.
    pub fn saturating_add(self, d: std::time::Duration) -> Self {
        let d = time::Duration::try_from(d).unwrap_or(time::Duration::MAX);
        let t = self.0.checked_add(d).unwrap_or(self.0);
        Self::clamp_year(t).unwrap_or(self)
    }

    fn clamp_year(t: OffsetDateTime) -> Result<Self, TimestampError> {
        // Only four-digit years keep the text fixed-width (and therefore sortable).
        if (0..=9999).contains(&t.year()) {
            Ok(Self(t))
        } else {
            Err(TimestampError {
                value: t.to_string(),
                reason: "year outside 0000..=9999".to_owned(),
            })
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_canonical())
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({})", self.to_canonical())
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;
    fn from_str(s: &str) -> Result<Self, TimestampError> {
        Self::parse(s)
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_canonical())
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn canonical_form_is_fixed_width_utc() {
        let t = Timestamp::parse("2026-06-16T12:34:56.123456789Z").unwrap();
        assert_eq!(t.to_canonical(), "2026-06-16T12:34:56.123456789Z");
        let t = Timestamp::parse("2026-06-16T12:00:00.5Z").unwrap();
        assert_eq!(t.to_canonical(), "2026-06-16T12:00:00.500000000Z");
        let t = Timestamp::parse("2026-06-16T14:00:00+02:00").unwrap();
        assert_eq!(t.to_canonical(), "2026-06-16T12:00:00.000000000Z");
    }

    #[test]
    fn garbage_is_a_typed_error() {
        for bad in [
            "",
            "now",
            "2026-13-01T00:00:00Z",
            "2026-06-16 12:00:00",
            "2026-06-16T12:00:00",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn text_order_equals_time_order(a in 0i128..253_402_300_799_000_000_000, b in 0i128..253_402_300_799_000_000_000) {
            let (ta, tb) = (Timestamp::from_unix_nanos(a).unwrap(), Timestamp::from_unix_nanos(b).unwrap());
            prop_assert_eq!(ta.cmp(&tb), ta.to_canonical().cmp(&tb.to_canonical()));
            prop_assert_eq!(Timestamp::parse(&ta.to_canonical()).unwrap(), ta);
        }

        #[test]
        fn parse_is_total(s in "\\PC{0,40}") {
            let _ = Timestamp::parse(&s);
        }
    }
}
