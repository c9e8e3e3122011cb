//! Retrying with capped exponential backoff, shared by everything that reconnects
//! (the MQTT driver, a lost microphone).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Next backoff delay: doubles from 0.5 s up to `max_s`.
pub fn backoff(attempt: u32, max_s: f64) -> Duration {
    let s = 0.5 * 2f64.powi(attempt.min(16) as i32);
    Duration::from_secs_f64(s.min(max_s))
}

/// Sleeps for `d`, waking early when `stop` is set. Returns true if it was set.
pub fn sleep_unless(stop: &AtomicBool, d: Duration) -> bool {
    let until = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(0, 30.0), Duration::from_millis(500));
        assert_eq!(backoff(1, 30.0), Duration::from_secs(1));
        assert_eq!(backoff(3, 30.0), Duration::from_secs(4));
        assert_eq!(backoff(10, 30.0), Duration::from_secs(30));
        assert_eq!(backoff(1000, 30.0), Duration::from_secs(30));
    }

    #[test]
    fn sleep_wakes_on_stop() {
        let stop = AtomicBool::new(true);
        let t = Instant::now();
        assert!(sleep_unless(&stop, Duration::from_secs(10)));
        assert!(t.elapsed() < Duration::from_secs(1));
        let go = AtomicBool::new(false);
        assert!(!sleep_unless(&go, Duration::from_millis(20)));
    }
}
