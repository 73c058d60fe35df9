//! The one wall clock, and the one way a wall-clock instant is written as RFC 3339.
//!
//! Every Unix-time read in the crate goes through [`Clock`] (or [`now_ms`], the system
//! clock): cache freshness and ages, lock and transfer expiry in the memory store,
//! revocation instants, JWT `exp`/`nbf`/`iat`. A [`Clock::manual`] clock stands still
//! until a test sets or advances it, so time-based tests need no sleeping. Waits and
//! timeouts use tokio's monotonic time instead (which tests pause), never this clock.

use std::num::NonZeroU8;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::format_description::well_known::iso8601::{Config, EncodedConfig, TimePrecision};
use time::format_description::well_known::{Iso8601, Rfc3339};
use time::OffsetDateTime;

/// Time since the Unix epoch: the system's, or one a test holds.
#[derive(Clone, Default)]
pub enum Clock {
    /// The system's wall clock.
    #[default]
    System,
    /// Milliseconds since the epoch, moved only by `set_ms` / `advance`.
    Manual(Arc<AtomicU64>),
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Clock::System => f.write_str("Clock::System"),
            Clock::Manual(ms) => write!(f, "Clock::Manual({}ms)", ms.load(Ordering::SeqCst)),
        }
    }
}

impl Clock {
    /// A clock that stands at `ms` until it is set or advanced.
    pub fn manual(ms: u64) -> Clock {
        Clock::Manual(Arc::new(AtomicU64::new(ms)))
    }

    /// Time since the Unix epoch (zero for a system clock set before it).
    pub fn now(&self) -> Duration {
        match self {
            Clock::System => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or(Duration::ZERO),
            Clock::Manual(ms) => Duration::from_millis(ms.load(Ordering::SeqCst)),
        }
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.now().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whole seconds since the Unix epoch.
    pub fn now_secs(&self) -> i64 {
        i64::try_from(self.now().as_secs()).unwrap_or(i64::MAX)
    }

    /// The current year, in UTC.
    pub fn year(&self) -> i32 {
        utc(self.now_ms()).year()
    }

    /// Sets a manual clock; a system clock cannot be set (a bug in the caller).
    pub fn set_ms(&self, ms: u64) {
        match self {
            Clock::System => panic!("the system clock cannot be set"),
            Clock::Manual(now) => now.store(ms, Ordering::SeqCst),
        }
    }

    /// Moves a manual clock forward; a system clock cannot be moved.
    pub fn advance(&self, by: Duration) {
        match self {
            Clock::System => panic!("the system clock cannot be advanced"),
            Clock::Manual(now) => {
                let by = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
                now.fetch_add(by, Ordering::SeqCst);
            }
        }
    }
}

/// Milliseconds since the Unix epoch by the system clock.
pub fn now_ms() -> u64 {
    Clock::System.now_ms()
}

/// RFC 3339 in UTC with exactly three fraction digits and `Z`.
const MILLIS: EncodedConfig = Config::DEFAULT
    .set_time_precision(TimePrecision::Second {
        decimal_digits: NonZeroU8::new(3),
    })
    .encode();

/// The last instant RFC 3339's four-digit year can spell (9999-12-31T23:59:59.999Z).
pub const MAX_RFC3339_MS: u64 = 253_402_300_799_999;

fn utc(ms: u64) -> OffsetDateTime {
    let nanos = i128::from(ms.min(MAX_RFC3339_MS)) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos).expect("within year 9999")
}

/// Milliseconds since the Unix epoch as RFC 3339 UTC with milliseconds
/// (`2026-05-01T12:00:00.250Z`); later than year 9999 is written as its last instant.
pub fn rfc3339_ms(ms: u64) -> String {
    utc(ms)
        .format(&Iso8601::<MILLIS>)
        .expect("a four-digit year formats")
}

/// Milliseconds since the Unix epoch as RFC 3339 UTC with a fraction only when there
/// is one (`2030-01-01T00:00:00Z`, `2030-01-01T00:00:00.5Z`); `None` outside years
/// 0 to 9999.
pub fn rfc3339(ms: i64) -> Option<String> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()?
        .format(&Rfc3339)
        .ok()
}

/// An RFC 3339 timestamp as milliseconds since the Unix epoch (any offset; `None`
/// when it is no RFC 3339 time).
pub fn parse_rfc3339(text: &str) -> Option<i128> {
    let t = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    Some(t.unix_timestamp_nanos() / 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_ms_pins_the_format() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339_ms(1_700_000_000_005), "2023-11-14T22:13:20.005Z");
        assert_eq!(rfc3339_ms(1_777_636_800_250), "2026-05-01T12:00:00.250Z");
        assert_eq!(rfc3339_ms(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
        assert_eq!(rfc3339_ms(MAX_RFC3339_MS), "9999-12-31T23:59:59.999Z");
        assert_eq!(rfc3339_ms(u64::MAX), "9999-12-31T23:59:59.999Z");
    }

    #[test]
    fn rfc3339_ms_agrees_with_the_civil_calendar_every_day() {
        // Hinnant's civil_from_days, the formula the ms formatter replaced: every
        // day from 1970 to 2200 (leap years, centuries, 2000) and a spread of times.
        fn civil(ms: u64) -> String {
            let secs = ms / 1000;
            let days = (secs / 86_400) as i64;
            let rem = secs % 86_400;
            let z = days + 719_468;
            let era = z.div_euclid(146_097);
            let doe = z.rem_euclid(146_097);
            let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
            let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
            let mp = (5 * doy + 2) / 153;
            let day = doy - (153 * mp + 2) / 5 + 1;
            let month = if mp < 10 { mp + 3 } else { mp - 9 };
            let year = yoe + era * 400 + i64::from(month <= 2);
            format!(
                "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
                rem / 3600,
                rem % 3600 / 60,
                rem % 60,
                ms % 1000
            )
        }
        for day in 0..84_000u64 {
            let ms = day * 86_400_000 + (day * 7_919_993) % 86_400_000;
            assert_eq!(rfc3339_ms(ms), civil(ms), "day {day}");
        }
    }

    #[test]
    fn rfc3339_writes_a_fraction_only_when_there_is_one() {
        assert_eq!(
            rfc3339(1_893_456_000_000).as_deref(),
            Some("2030-01-01T00:00:00Z")
        );
        assert_eq!(
            rfc3339(1_893_456_000_500).as_deref(),
            Some("2030-01-01T00:00:00.5Z")
        );
        assert_eq!(rfc3339(-1).as_deref(), Some("1969-12-31T23:59:59.999Z"));
        assert_eq!(rfc3339(MAX_RFC3339_MS as i64 + 1), None);
        assert_eq!(
            parse_rfc3339("2030-01-01T01:00:00+01:00"),
            Some(1_893_456_000_000)
        );
        assert_eq!(parse_rfc3339("2030-01-01"), None);
    }

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let c = Clock::manual(1_700_000_000_000);
        assert_eq!(c.now_ms(), 1_700_000_000_000);
        assert_eq!(c.now_secs(), 1_700_000_000);
        let shared = c.clone();
        shared.advance(Duration::from_millis(1_500));
        assert_eq!(c.now_ms(), 1_700_000_001_500);
        assert_eq!(c.now(), Duration::from_millis(1_700_000_001_500));
        assert_eq!(c.year(), 2023);
        c.set_ms(5);
        assert_eq!(shared.now_ms(), 5);
        assert_eq!(c.year(), 1970);
    }

    #[test]
    fn the_system_clock_is_unix_time() {
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let now = now_ms();
        let after = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(before <= now && now <= after);
    }
}
