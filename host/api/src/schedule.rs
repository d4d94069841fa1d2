//! Timestamps in requests (`scheduled_at`, `schedule`): ISO 8601 with a
//! timezone, in the future, as Patroni's `parse_schedule` demands.

use axum::http::StatusCode;
use chrono::{DateTime, FixedOffset, NaiveDateTime, Utc};

/// Parse `text` as the time to run `action`; `Err` carries Patroni's status and
/// message (400 without a timezone, 422 in the past or unparsable).
pub(crate) fn parse(
    text: &str,
    action: &str,
    now: DateTime<Utc>,
) -> Result<DateTime<FixedOffset>, (StatusCode, String)> {
    let text = text.trim();
    let with_zone = DateTime::parse_from_rfc3339(text)
        .or_else(|_| DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%:z"))
        .or_else(|_| DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M%:z"))
        .or_else(|_| DateTime::parse_from_str(text, "%Y-%m-%d %H:%M%:z"));
    match with_zone {
        Ok(at) if at < now => Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("Cannot schedule {action} in the past"),
        )),
        Ok(at) => Ok(at),
        Err(_) if is_naive(text) => Err((
            StatusCode::BAD_REQUEST,
            format!("Timezone information is mandatory for the scheduled {action}"),
        )),
        Err(_) => Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            "Unable to parse scheduled timestamp. It should be in an unambiguous format, e.g. ISO 8601"
                .to_owned(),
        )),
    }
}

fn is_naive(text: &str) -> bool {
    [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .any(|f| NaiveDateTime::parse_from_str(text, f).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn iso_with_an_offset_in_the_future_is_accepted() {
        for t in [
            "2026-01-02T10:00:00+02:00",
            "2026-01-02T10:00:00.5Z",
            "2026-01-02 10:00:00+00:00",
            "2026-01-02T10:00+01:00",
        ] {
            assert!(parse(t, "switchover", now()).is_ok(), "{t}");
        }
    }

    #[test]
    fn a_time_without_zone_is_400_and_a_past_or_garbage_one_422() {
        let e = parse("2026-01-02T10:00:00", "restart", now()).unwrap_err();
        assert_eq!(e.0, StatusCode::BAD_REQUEST);
        assert_eq!(
            e.1,
            "Timezone information is mandatory for the scheduled restart"
        );
        let e = parse("2025-01-02T10:00:00Z", "switchover", now()).unwrap_err();
        assert_eq!(
            e,
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                "Cannot schedule switchover in the past".into()
            )
        );
        let e = parse("tomorrow", "switchover", now()).unwrap_err();
        assert_eq!(e.0, StatusCode::UNPROCESSABLE_ENTITY);
    }
}
