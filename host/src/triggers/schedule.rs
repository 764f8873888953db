//! timerTrigger schedules: NCRONTAB expressions with seconds, as Azure takes
//! them (`{second} {minute} {hour} {day} {month} {day-of-week}`, parsed by
//! the `croner` crate, evaluated in UTC), or a TimeSpan (`00:00:30`) that
//! repeats from the last occurrence.

use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds};

/// A parsed `schedule`.
#[derive(Debug, Clone)]
pub enum Schedule {
    Cron(Box<Cron>),
    /// A TimeSpan: every so long, counted from the previous occurrence.
    Interval(Duration),
}

impl Schedule {
    /// Parse an NCRONTAB expression (six fields; five, without seconds, are
    /// accepted too) or a TimeSpan `hh:mm:ss` / `d.hh:mm:ss`. The error says
    /// what is wrong and shows the expected form.
    pub fn parse(schedule: &str) -> Result<Schedule, String> {
        let s = schedule.trim();
        if s.contains(':') && !s.contains(' ') {
            let every = crate::config::parse_timespan(s)?;
            if every.is_zero() {
                return Err(format!(
                    "schedule '{s}': a TimeSpan must be longer than zero"
                ));
            }
            return Ok(Schedule::Interval(every));
        }
        // NCRONTAB matches a day when both the day of month and the day of
        // week match (Vixie cron takes either): `dom_and_dow` is NCRONTAB's rule.
        let parser = CronParser::builder()
            .seconds(Seconds::Optional)
            .dom_and_dow(true)
            .build();
        parser
            .parse(s)
            .map(|c| Schedule::Cron(Box::new(c)))
            .map_err(|e| {
                format!(
                    "schedule '{s}' is not an NCRONTAB expression ({e}): use six fields \
                 '{{second}} {{minute}} {{hour}} {{day}} {{month}} {{day-of-week}}', e.g. \
                 '0 */5 * * * *' for every five minutes, or a TimeSpan such as '00:00:30'"
                )
            })
    }

    /// The first occurrence after `after` (for a TimeSpan: `after` + the span).
    pub fn next_after(&self, after: SystemTime) -> Option<SystemTime> {
        match self {
            Schedule::Interval(every) => after.checked_add(*every),
            Schedule::Cron(cron) => {
                let from: DateTime<Utc> = after.into();
                cron.find_next_occurrence(&from, false)
                    .ok()
                    .map(SystemTime::from)
            }
        }
    }
}

/// `2026-01-31T12:00:00.000Z`, as the schedule status blob keeps times.
pub fn rfc3339(t: SystemTime) -> String {
    DateTime::<Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A time in RFC 3339 (any offset; Azure writes local offsets).
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    DateTime::parse_from_rfc3339(s).ok().map(SystemTime::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> SystemTime {
        parse_rfc3339(s).unwrap()
    }

    #[test]
    fn ncrontab_with_seconds() {
        let every_5s = Schedule::parse("*/5 * * * * *").unwrap();
        assert_eq!(
            every_5s.next_after(at("2026-01-01T00:00:03.5Z")),
            Some(at("2026-01-01T00:00:05Z"))
        );
        let weekdays_930 = Schedule::parse("0 30 9 * * 1-5").unwrap();
        // 2026-01-03 is a Saturday: next is Monday the 5th.
        assert_eq!(
            weekdays_930.next_after(at("2026-01-03T10:00:00Z")),
            Some(at("2026-01-05T09:30:00Z"))
        );
        // Five fields: minutes (second 0).
        let five = Schedule::parse("*/10 * * * *").unwrap();
        assert_eq!(
            five.next_after(at("2026-01-01T00:00:01Z")),
            Some(at("2026-01-01T00:10:00Z"))
        );
    }

    #[test]
    fn day_of_month_and_day_of_week_both_apply() {
        // Friday the 13th, as NCRONTAB reads it.
        let s = Schedule::parse("0 0 0 13 * 5").unwrap();
        assert_eq!(
            s.next_after(at("2026-01-01T00:00:00Z")),
            Some(at("2026-02-13T00:00:00Z"))
        );
    }

    #[test]
    fn timespans_repeat_from_the_last_occurrence() {
        let s = Schedule::parse("00:00:05").unwrap();
        assert_eq!(
            s.next_after(at("2026-01-01T00:00:03Z")),
            Some(at("2026-01-01T00:00:08Z"))
        );
        assert!(Schedule::parse("1.00:00:00").is_ok());
        assert!(Schedule::parse("00:00:00").is_err());
    }

    #[test]
    fn bad_schedules_say_what_is_expected() {
        let e = Schedule::parse("every five minutes").unwrap_err();
        assert!(e.contains("'0 */5 * * * *'"), "{e}");
        assert!(Schedule::parse("61 * * * * *").is_err());
        assert!(Schedule::parse("00:99:00").is_err());
    }

    #[test]
    fn status_times_round_trip() {
        let t = at("2026-03-04T05:06:07.089Z");
        assert_eq!(rfc3339(t), "2026-03-04T05:06:07.089Z");
        assert_eq!(
            parse_rfc3339("2016-09-12T16:15:00-07:00"),
            Some(at("2016-09-12T23:15:00Z"))
        );
    }
}
