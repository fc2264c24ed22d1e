//! An output's parameters (`params = { from = "22:00" }` in the host's configuration),
//! parsed into a typed struct before `init`. `#[derive(Params)]` writes the parser: each
//! field is a parameter of the same name; `#[param(default = "…")]` makes it optional.
//! An unknown, repeated, missing or unparsable parameter is an error that names it.

use std::str::FromStr;

use crate::{Error, Result, DAY_MS};

/// Parameters parsed from the host's (key, value) pairs, in any order.
pub trait Params: Sized {
    fn parse(pairs: &[(String, String)]) -> Result<Self>;
}

/// No parameters: any given is an error (a typo would otherwise pass unnoticed).
impl Params for () {
    fn parse(pairs: &[(String, String)]) -> Result<()> {
        match pairs.first() {
            None => Ok(()),
            Some((key, _)) => Err(Error::new(format!("takes no parameters, got {key:?}"))),
        }
    }
}

/// A parameter's value parsed from its text. The error says what was expected; the caller
/// adds which parameter and what text.
pub trait FromParam: Sized {
    fn from_param(text: &str) -> Result<Self, String>;
}

macro_rules! parsed_params {
    ($($ty:ty => $what:literal),*) => {$(
        impl FromParam for $ty {
            fn from_param(text: &str) -> Result<Self, String> {
                <$ty>::from_str(text.trim()).map_err(|_| $what.to_owned())
            }
        }
    )*};
}

parsed_params!(
    u32 => "a whole number from 0 to 4294967295",
    u64 => "a whole number of 0 or more",
    i64 => "a whole number",
    bool => "true or false"
);

impl FromParam for f64 {
    fn from_param(text: &str) -> Result<Self, String> {
        match f64::from_str(text.trim()) {
            Ok(value) if value.is_finite() => Ok(value),
            _ => Err("a finite number".to_owned()),
        }
    }
}

impl FromParam for String {
    fn from_param(text: &str) -> Result<Self, String> {
        Ok(text.to_owned())
    }
}

/// A time of day, `"HH:MM"` from `00:00` to `23:59`, as milliseconds since midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct TimeOfDay(u32);

impl TimeOfDay {
    pub fn from_ms(ms: u32) -> Option<TimeOfDay> {
        (i64::from(ms) < DAY_MS).then_some(TimeOfDay(ms))
    }

    pub fn ms(self) -> u32 {
        self.0
    }

    /// Whether this time is in [`from`, `to`), a range that wraps past midnight when
    /// `from` is later than `to` (22:00–06:00). An empty range (`from == to`) holds nothing.
    pub fn is_within(self, from: TimeOfDay, to: TimeOfDay) -> bool {
        if from <= to {
            from <= self && self < to
        } else {
            self >= from || self < to
        }
    }

    /// The time of day (UTC) of an instant in ms since the epoch, before 1970 included.
    pub fn of_instant(ts_ms: i64) -> TimeOfDay {
        TimeOfDay(ts_ms.rem_euclid(DAY_MS) as u32)
    }
}

impl std::fmt::Display for TimeOfDay {
    /// `HH:MM` (seconds are dropped).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let minutes = self.0 / 60_000;
        write!(f, "{:02}:{:02}", minutes / 60, minutes % 60)
    }
}

impl FromParam for TimeOfDay {
    fn from_param(text: &str) -> Result<Self, String> {
        let bad = || "a time of day \"HH:MM\" (00:00 to 23:59)".to_owned();
        let (hours, minutes) = text.split_once(':').ok_or_else(bad)?;
        let two_digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
        if !two_digits(hours) || !two_digits(minutes) {
            return Err(bad());
        }
        let (hours, minutes): (u32, u32) = (hours.parse().unwrap(), minutes.parse().unwrap());
        if hours > 23 || minutes > 59 {
            return Err(bad());
        }
        Ok(TimeOfDay((hours * 60 + minutes) * 60_000))
    }
}

/// A fixed offset from UTC, `"+01:00"`, `"-05:30"` or `"+00:00"` (sites keep UTC
/// timestamps; a rule about local hours takes the site's offset as a parameter). No
/// daylight-saving rules: one offset per output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UtcOffset(i32);

impl UtcOffset {
    /// The offset in milliseconds (negative west of Greenwich).
    pub fn ms(self) -> i32 {
        self.0
    }

    pub fn from_ms(ms: i32) -> Option<UtcOffset> {
        (ms.unsigned_abs() < 24 * 3_600_000).then_some(UtcOffset(ms))
    }

    /// The local time of day of an instant (UTC ms since the epoch) at this offset.
    pub fn time_of_day(self, ts_ms: i64) -> TimeOfDay {
        TimeOfDay::of_instant(ts_ms + i64::from(self.0))
    }
}

impl std::fmt::Display for UtcOffset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let minutes = self.0.unsigned_abs() / 60_000;
        let sign = if self.0 < 0 { '-' } else { '+' };
        write!(f, "UTC{sign}{:02}:{:02}", minutes / 60, minutes % 60)
    }
}

impl FromParam for UtcOffset {
    fn from_param(text: &str) -> Result<Self, String> {
        let bad = || "an offset from UTC \"+HH:MM\" or \"-HH:MM\" (e.g. +01:00)".to_owned();
        let text = text.trim();
        let (sign, rest) = match text.as_bytes().first() {
            Some(b'+') => (1, &text[1..]),
            Some(b'-') => (-1, &text[1..]),
            _ => return Err(bad()),
        };
        let time = TimeOfDay::from_param(rest).map_err(|_| bad())?;
        UtcOffset::from_ms(sign * time.ms() as i32).ok_or_else(bad)
    }
}

/// For `#[derive(Params)]`: the value of `key`, parsed, or `default` parsed if absent.
#[doc(hidden)]
pub fn field<T: FromParam>(
    pairs: &[(String, String)],
    key: &str,
    default: Option<&str>,
) -> Result<T> {
    let mut given = pairs.iter().filter(|(k, _)| k == key).map(|(_, v)| v);
    let text = match (given.next(), given.next()) {
        (Some(_), Some(_)) => return Err(Error::new(format!("parameter {key} is given twice"))),
        (Some(text), None) => text.as_str(),
        (None, _) => default.ok_or_else(|| Error::new(format!("parameter {key} is required")))?,
    };
    T::from_param(text)
        .map_err(|expected| Error::new(format!("parameter {key} = {text:?} is not {expected}")))
}

/// For `#[derive(Params)]`: fails on a key that is not one of `known`.
#[doc(hidden)]
pub fn only(pairs: &[(String, String)], known: &[&str]) -> Result<()> {
    match pairs.iter().find(|(k, _)| !known.contains(&k.as_str())) {
        None => Ok(()),
        Some((key, _)) => Err(Error::new(format!(
            "unknown parameter {key:?}; it takes {}",
            known.join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_time_of_day_is_hours_and_minutes() {
        assert_eq!(TimeOfDay::from_param("02:30").unwrap().ms(), 150 * 60_000);
        assert_eq!(TimeOfDay::from_param("23:59").unwrap().ms(), 1439 * 60_000);
        for bad in ["24:00", "2:30", "02:60", "02-30", "", "ab:cd"] {
            assert!(TimeOfDay::from_param(bad).is_err(), "{bad}");
        }
        assert_eq!(TimeOfDay::of_instant(-1).ms(), (DAY_MS - 1) as u32);
    }

    #[test]
    fn a_range_of_times_may_wrap_past_midnight() {
        let t = |s| TimeOfDay::from_param(s).unwrap();
        assert!(t("03:00").is_within(t("02:00"), t("06:00")));
        assert!(!t("06:00").is_within(t("02:00"), t("06:00")));
        assert!(t("23:00").is_within(t("22:00"), t("06:00")));
        assert!(t("05:59").is_within(t("22:00"), t("06:00")));
        assert!(!t("12:00").is_within(t("22:00"), t("06:00")));
        assert!(!t("02:00").is_within(t("02:00"), t("02:00")));
    }

    #[test]
    fn utc_offsets_are_signed_hours_and_minutes() {
        assert_eq!(UtcOffset::from_param("+01:00").unwrap().ms(), 3_600_000);
        assert_eq!(UtcOffset::from_param("-05:30").unwrap().ms(), -330 * 60_000);
        assert_eq!(UtcOffset::from_param("+00:00").unwrap().ms(), 0);
        for bad in ["01:00", "+1:00", "+24:00", "", "Z"] {
            assert!(UtcOffset::from_param(bad).is_err(), "{bad}");
        }
        // 23:30 UTC is 00:30 the next day at +01:00.
        let late_evening = 23 * 3_600_000 + 30 * 60_000;
        let plus_one = UtcOffset::from_param("+01:00").unwrap();
        assert_eq!(plus_one.time_of_day(late_evening).ms(), 30 * 60_000);
        assert_eq!(plus_one.to_string(), "UTC+01:00");
    }

    #[test]
    fn a_field_is_parsed_defaulted_or_refused_by_name() {
        let given = pairs(&[("limit", "2.5")]);
        assert_eq!(field::<f64>(&given, "limit", None).unwrap(), 2.5);
        assert_eq!(field::<f64>(&given, "other", Some("1")).unwrap(), 1.0);
        let err = field::<f64>(&given, "other", None).unwrap_err();
        assert_eq!(err.message(), "parameter other is required");
        let err = field::<u32>(&given, "limit", None).unwrap_err();
        assert!(err
            .message()
            .starts_with("parameter limit = \"2.5\" is not a whole number"));
        let twice = pairs(&[("limit", "1"), ("limit", "2")]);
        assert!(field::<f64>(&twice, "limit", None).is_err());
    }

    #[test]
    fn unknown_parameters_are_refused_with_the_known_ones() {
        let err = only(&pairs(&[("form", "1")]), &["from", "to"]).unwrap_err();
        assert_eq!(
            err.message(),
            "unknown parameter \"form\"; it takes from, to"
        );
        assert!(<() as Params>::parse(&pairs(&[("x", "1")])).is_err());
    }
}
