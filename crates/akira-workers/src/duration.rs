//! Durations in configuration files, written as `30s`, `5m`, `1h 30m` or `30d`.

use std::time::Duration;

use serde::{de, Deserialize, Deserializer, Serializer};

/// Parses a duration such as `30s`, `250ms`, `5m` or `30d`.
pub fn parse(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|err| {
        format!(
            "invalid duration {text:?} ({err}): write a number with a unit, such as 30s, 5m or 30d"
        )
    })
}

/// Formats a duration the way [`parse`] reads it (`30s`, `5m`, `1h 30m`).
pub fn format(duration: Duration) -> String {
    if duration.is_zero() {
        return "0s".to_string();
    }
    humantime::format_duration(duration).to_string()
}

/// Serde adapter for `Duration` fields: `#[serde(with = "crate::duration")]`.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Seconds(u64),
    }
    match Raw::deserialize(deserializer)
        .map_err(|_| de::Error::custom("expected a duration such as \"30s\", \"5m\" or \"30d\""))?
    {
        Raw::Text(text) => parse(&text).map_err(de::Error::custom),
        Raw::Seconds(seconds) => Ok(Duration::from_secs(seconds)),
    }
}

/// Serializes a `Duration` as text that [`deserialize`] accepts.
pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format(*duration))
}

/// Serde adapter for `Option<Duration>` fields.
pub mod option {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        struct Wrapper(#[serde(with = "super")] Duration);
        Option::<Wrapper>::deserialize(deserializer).map(|value| value.map(|Wrapper(d)| d))
    }

    pub fn serialize<S: Serializer>(
        duration: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match duration {
            Some(duration) => super::serialize(duration, serializer),
            None => serializer.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_units() {
        assert_eq!(parse("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse("30d").unwrap(), Duration::from_secs(30 * 86_400));
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
    }

    #[test]
    fn invalid_duration_names_value_and_form() {
        let err = parse("30x").unwrap_err();
        assert!(err.contains("\"30x\""), "{err}");
        assert!(err.contains("30s"), "{err}");
    }

    #[test]
    fn format_round_trips() {
        for d in [
            Duration::from_secs(90),
            Duration::from_millis(1500),
            Duration::ZERO,
        ] {
            assert_eq!(parse(&format(d)).unwrap(), d);
        }
    }
}
