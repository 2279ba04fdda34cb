//! Fixed windows aligned to the Unix epoch: a minute starts at :00 UTC, a day at 00:00 UTC, and an
//! N-second window at every multiple of N seconds since 1970-01-01T00:00:00Z.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    seconds: u64,
}

impl Window {
    pub const SECOND: Window = Window { seconds: 1 };
    pub const MINUTE: Window = Window { seconds: 60 };
    pub const HOUR: Window = Window { seconds: 3600 };
    pub const DAY: Window = Window { seconds: 86_400 };

    /// `None` for zero: a window must have a length.
    pub fn from_seconds(seconds: u64) -> Option<Window> {
        (seconds > 0).then_some(Window { seconds })
    }

    pub fn seconds(self) -> u64 {
        self.seconds
    }

    /// Start (Unix seconds) of the window containing `now`.
    pub fn start_of(self, now: u64) -> u64 {
        now - now % self.seconds
    }

    /// Whole seconds from `now` until the window that contains it ends (at least 1).
    pub fn seconds_until_reset(self, now: u64) -> u64 {
        self.seconds - now % self.seconds
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.seconds {
            1 => f.write_str("second"),
            60 => f.write_str("minute"),
            3600 => f.write_str("hour"),
            86_400 => f.write_str("day"),
            n => write!(f, "{n} seconds"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::test;

    #[test]
    fn minute_windows_start_on_the_minute() {
        // 2026-11-22T10:15:42Z
        let now = 1_795_342_542;
        assert_eq!(Window::MINUTE.start_of(now), now - 42);
        assert_eq!(Window::MINUTE.seconds_until_reset(now), 18);
    }

    #[test]
    fn day_windows_start_at_utc_midnight() {
        let midnight = 1_795_305_600; // 2026-11-22T00:00:00Z
        assert_eq!(Window::DAY.start_of(midnight + 36_542), midnight);
        assert_eq!(Window::DAY.start_of(midnight), midnight);
        assert_eq!(Window::DAY.seconds_until_reset(midnight), 86_400);
    }

    #[test]
    fn n_second_windows_are_multiples_of_n_since_the_epoch() {
        let w = Window::from_seconds(7).unwrap();
        assert_eq!(w.start_of(20), 14);
        assert_eq!(w.start_of(21), 21);
        assert_eq!(w.seconds_until_reset(20), 1);
        assert_eq!(w.seconds_until_reset(21), 7);
    }

    #[test]
    fn zero_is_not_a_window() {
        assert_eq!(Window::from_seconds(0), None);
    }

    #[test]
    fn display_names_the_common_windows() {
        assert_eq!(Window::MINUTE.to_string(), "minute");
        assert_eq!(Window::from_seconds(90).unwrap().to_string(), "90 seconds");
    }
}
