//! The one retry spacing: a first delay doubled after each consecutive failure up to
//! a ceiling, and back to the first delay after a success. Used by the store's
//! connection monitor and subscriber, the capacity sync and revocation retries.

use std::time::Duration;

/// Exponential backoff with a ceiling.
#[derive(Clone, Debug)]
pub struct Backoff {
    first: Duration,
    ceiling: Duration,
    failures: u32,
}

impl Backoff {
    /// Starts at `first`; never longer than `max` (or `first`, when that is longer).
    pub fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            ceiling: max.max(first),
            failures: 0,
        }
    }

    /// The wait now: `first` doubled once per failure since the last success, at
    /// most the ceiling.
    pub fn delay(&self) -> Duration {
        let factor = 1u32 << self.failures.min(16);
        self.first.saturating_mul(factor).min(self.ceiling)
    }

    /// Counts one more failure.
    pub fn failed(&mut self) {
        self.failures = self.failures.saturating_add(1);
    }

    /// The wait now, and one more failure counted: for a loop that waits after each
    /// failed attempt.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.delay();
        self.failed();
        d
    }

    /// Back to the first delay.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_ceiling_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let waits: Vec<u64> = (0..7).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 2000, 2000]);
        for _ in 0..100 {
            b.failed();
        }
        assert_eq!(b.delay(), Duration::from_secs(2));
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }

    #[test]
    fn a_first_delay_longer_than_the_ceiling_is_kept() {
        let mut b = Backoff::new(Duration::from_secs(60), Duration::from_secs(30));
        assert_eq!(b.next_delay(), Duration::from_secs(60));
        assert_eq!(b.next_delay(), Duration::from_secs(60));
    }
}
