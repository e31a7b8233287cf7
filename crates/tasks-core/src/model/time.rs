//! Time as tasks hold it: the one timestamp format, and how far ahead (and how little in the
//! past) a task may be scheduled.

use chrono::Duration;

/// A task may be scheduled at most this far ahead: ten years, leap days included, so that ten
/// calendar years from any date fit. Its execution starts only within the lead time, so Step
/// Functions' one-year limit on an execution does not bound it.
pub const MAX_SCHEDULE_AHEAD: Duration = Duration::days(10 * 365 + 3);

/// A requested time this close to the past is accepted and runs at once (clock skew, latency).
pub const PAST_TOLERANCE: Duration = Duration::seconds(1);

/// Timestamps are RFC 3339 UTC with milliseconds and `Z`, everywhere: in items, in the API, in
/// the execution input (Step Functions' `TimestampPath` accepts only the `Z` form).
pub mod rfc3339_millis {
    use chrono::{DateTime, DurationRound, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn format(at: &DateTime<Utc>) -> String {
        at.to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    /// The time as stored: to the millisecond.
    pub fn truncate(at: DateTime<Utc>) -> DateTime<Utc> {
        at.duration_trunc(chrono::Duration::milliseconds(1))
            .unwrap_or(at)
    }

    pub fn serialize<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(at))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|at| at.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }

    pub mod option {
        use chrono::{DateTime, Utc};
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(
            at: &Option<DateTime<Utc>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match at {
                Some(at) => super::serialize(at, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<DateTime<Utc>>, D::Error> {
            #[derive(Deserialize)]
            struct Wrapper(#[serde(with = "super")] DateTime<Utc>);
            Ok(Option::<Wrapper>::deserialize(d)?.map(|Wrapper(at)| at))
        }
    }
}
