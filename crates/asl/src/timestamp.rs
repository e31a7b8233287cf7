//! Timestamps as the States Language accepts them: RFC 3339 with an uppercase `T` between date
//! and time and an uppercase `Z` when there is no numeric offset.

use chrono::{DateTime, SecondsFormat, Utc};

pub(crate) fn parse(text: &str) -> Option<DateTime<Utc>> {
    let separator_ok = text.as_bytes().get(10) == Some(&b'T');
    if !separator_ok || text.contains('z') || text.contains('t') {
        return None;
    }
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|time| time.with_timezone(&Utc))
}

/// The form Step Functions writes into the context object (millisecond precision, `Z`).
pub(crate) fn format(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_states_language_form_only() {
        assert!(parse("2026-01-02T03:04:05Z").is_some());
        assert!(parse("2026-01-02T03:04:05.123+02:00").is_some());
        for text in [
            "2026-01-02t03:04:05Z",
            "2026-01-02 03:04:05Z",
            "2026-01-02T03:04:05z",
            "2026-01-02",
        ] {
            assert!(parse(text).is_none(), "{text}");
        }
        assert_eq!(
            format(parse("2026-01-02T03:04:05+01:00").unwrap()),
            "2026-01-02T02:04:05.000Z"
        );
    }
}
