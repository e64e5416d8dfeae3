//! When the hub loader tries a request again, and when it gives up: the policy alone, without
//! the browser, so that it is tested natively (the fetching itself is in `web::hub_fetch`).
//!
//! A failed attempt is either a network failure (no answer, or a body cut off: a dropped
//! connection; browsers report a refusal by CORS the same way) or an HTTP status. Network
//! failures and the statuses a busy or restarting server answers (408, 425, 429, 500, 502, 503,
//! 504) are tried again: after the server's `Retry-After` when it sent one the page can read
//! (seconds or an HTTP date; cross-origin, only when the server exposes it), else after a delay
//! doubling from [`RetryPolicy::first_delay_ms`]. An attempt that received bytes starts the
//! count again, since the download moved on; any other status is final at once.

use std::time::{Duration, UNIX_EPOCH};

/// What went wrong with one attempt at a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No answer, or its body cut off.
    Network,
    /// The server answered `status`, with this `Retry-After` header if the page could read one.
    Status {
        /// The HTTP status.
        status: u16,
        /// The `Retry-After` header's value.
        retry_after: Option<String>,
    },
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Try again after this many milliseconds.
    WaitMs(u64),
    /// Give up: the status is not one a later attempt may change.
    Final,
    /// Give up: this many attempts in a row failed.
    Exhausted(u32),
    /// Give up: the server asks to wait this many milliseconds, longer than the policy waits.
    WaitTooLong(u64),
}

/// How many attempts, and how long to wait between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in a row without progress before giving up (the first one included).
    pub attempts: u32,
    /// The wait after the first failure without `Retry-After`; it doubles after each failure.
    pub first_delay_ms: u64,
    /// The longest wait without `Retry-After`.
    pub max_delay_ms: u64,
    /// The longest `Retry-After` honoured; a server asking for more is reported instead.
    pub max_retry_after_ms: u64,
}

/// The hub loader's policy: 5 attempts, waiting 0.5, 1, 2 and 4 s between them (7.5 s in all),
/// or up to a minute when the server says so.
pub const HUB_RETRIES: RetryPolicy = RetryPolicy {
    attempts: 5,
    first_delay_ms: 500,
    max_delay_ms: 8_000,
    max_retry_after_ms: 60_000,
};

/// Whether a later attempt may get another answer than `status`: a timeout, too many requests,
/// or a server error of the kind a busy or restarting server or gateway answers.
pub fn is_transient(status: u16) -> bool {
    matches!(status, 408 | 425 | 429 | 500 | 502 | 503 | 504)
}

/// The wait a `Retry-After` header asks for, in milliseconds from `now_ms` (milliseconds since
/// the Unix epoch): its delay in seconds, or the time until its HTTP date (0 once past).
/// `None` when it is neither.
pub fn retry_after_ms(value: &str, now_ms: u64) -> Option<u64> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(seconds.saturating_mul(1000));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let at_ms = at.duration_since(UNIX_EPOCH).ok()?.as_millis();
    Some(u64::try_from(at_ms.saturating_sub(u128::from(now_ms))).unwrap_or(u64::MAX))
}

impl RetryPolicy {
    /// What to do after `failures` attempts in a row failed (1 after the first), the last with
    /// `failure`, at `now_ms` (milliseconds since the Unix epoch, for a `Retry-After` date).
    pub fn after(&self, failures: u32, failure: &Failure, now_ms: u64) -> Next {
        let retry_after = match failure {
            Failure::Network => None,
            Failure::Status { status, .. } if !is_transient(*status) => return Next::Final,
            Failure::Status { retry_after, .. } => retry_after
                .as_deref()
                .and_then(|value| retry_after_ms(value, now_ms)),
        };
        if failures >= self.attempts {
            return Next::Exhausted(failures);
        }
        match retry_after {
            Some(ms) if ms > self.max_retry_after_ms => Next::WaitTooLong(ms),
            Some(ms) => Next::WaitMs(ms),
            None => {
                let doubled = 1u64
                    .checked_shl(failures.saturating_sub(1))
                    .map_or(u64::MAX, |factor| {
                        self.first_delay_ms.saturating_mul(factor)
                    });
                Next::WaitMs(doubled.min(self.max_delay_ms))
            }
        }
    }
}

/// `ms` as words for a message: "250 ms", "90 s", "60 min", "10 h".
pub fn wait_in_words(ms: u64) -> String {
    let seconds = Duration::from_millis(ms).as_secs_f64();
    if seconds >= 7200.0 {
        format!("{:.0} h", seconds / 3600.0)
    } else if seconds >= 120.0 {
        format!("{:.0} min", seconds / 60.0)
    } else if seconds >= 1.0 {
        format!("{seconds:.0} s")
    } else {
        format!("{ms} ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16, retry_after: Option<&str>) -> Failure {
        Failure::Status {
            status,
            retry_after: retry_after.map(str::to_string),
        }
    }

    #[test]
    fn network_failures_and_busy_servers_are_tried_again_with_a_doubling_wait() {
        let waits: Vec<Next> = (1..=5)
            .map(|n| HUB_RETRIES.after(n, &Failure::Network, 0))
            .collect();
        assert_eq!(
            waits,
            [
                Next::WaitMs(500),
                Next::WaitMs(1000),
                Next::WaitMs(2000),
                Next::WaitMs(4000),
                Next::Exhausted(5)
            ]
        );
        for code in [408, 425, 429, 500, 502, 503, 504] {
            assert_eq!(
                HUB_RETRIES.after(1, &status(code, None), 0),
                Next::WaitMs(500)
            );
            assert_eq!(
                HUB_RETRIES.after(5, &status(code, None), 0),
                Next::Exhausted(5)
            );
        }
    }

    #[test]
    fn the_wait_is_capped_and_never_overflows() {
        let policy = RetryPolicy {
            attempts: u32::MAX,
            ..HUB_RETRIES
        };
        assert_eq!(policy.after(5, &Failure::Network, 0), Next::WaitMs(8000));
        assert_eq!(policy.after(64, &Failure::Network, 0), Next::WaitMs(8000));
        assert_eq!(policy.after(1000, &Failure::Network, 0), Next::WaitMs(8000));
    }

    #[test]
    fn other_statuses_are_final_at_once() {
        for code in [200, 301, 400, 401, 403, 404, 410, 416, 501, 505] {
            assert_eq!(
                HUB_RETRIES.after(1, &status(code, Some("1")), 0),
                Next::Final,
                "{code}"
            );
        }
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date_sets_the_wait() {
        assert_eq!(
            HUB_RETRIES.after(1, &status(429, Some("2")), 0),
            Next::WaitMs(2000)
        );
        assert_eq!(
            HUB_RETRIES.after(3, &status(503, Some(" 0 ")), 0),
            Next::WaitMs(0)
        );
        // 1994-11-06 08:49:37 UTC is 784111777 s after the epoch.
        let date = "Sun, 06 Nov 1994 08:49:37 GMT";
        let now = 784_111_777_000 - 1500;
        assert_eq!(
            HUB_RETRIES.after(1, &status(429, Some(date)), now),
            Next::WaitMs(1500)
        );
        // A date already past: at once.
        assert_eq!(
            HUB_RETRIES.after(1, &status(429, Some(date)), now + 10_000),
            Next::WaitMs(0)
        );
        // Unreadable: the doubling wait.
        assert_eq!(
            HUB_RETRIES.after(2, &status(429, Some("soon")), 0),
            Next::WaitMs(1000)
        );
        assert_eq!(retry_after_ms("-1", 0), None);
        assert_eq!(retry_after_ms("18446744073709551615", 0), Some(u64::MAX));
    }

    #[test]
    fn a_retry_after_beyond_a_minute_is_reported_not_waited_for() {
        assert_eq!(
            HUB_RETRIES.after(1, &status(429, Some("3600")), 0),
            Next::WaitTooLong(3_600_000)
        );
        assert_eq!(
            HUB_RETRIES.after(1, &status(429, Some("60")), 0),
            Next::WaitMs(60_000)
        );
        // The attempts run out first.
        assert_eq!(
            HUB_RETRIES.after(5, &status(429, Some("3600")), 0),
            Next::Exhausted(5)
        );
    }

    #[test]
    fn waits_in_words() {
        assert_eq!(wait_in_words(250), "250 ms");
        assert_eq!(wait_in_words(1000), "1 s");
        assert_eq!(wait_in_words(90_000), "90 s");
        assert_eq!(wait_in_words(3_600_000), "60 min");
        assert_eq!(wait_in_words(36_000_000), "10 h");
    }
}
