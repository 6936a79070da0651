//! The one retry loop of the pipeline: exponential backoff with jitter, an
//! optional limit on attempts and on total time, cancellation by shutdown, and
//! a classification of each error by the caller, so that a permanent error is
//! given up at once instead of retried for ever.

use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What to do about one failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Verdict {
    /// Transient: try again after the policy's backoff.
    Retry,
    /// Transient, and the other side said when (`Retry-After`).
    RetryAfter(Duration),
    /// Permanent: retrying cannot help.
    GiveUp,
}

/// Whose wait a delay is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asked {
    /// The other side asked for it and it is at least the backoff.
    ByTheOtherSide,
    /// The policy's backoff.
    ByThePolicy,
}

/// Why [`Retry::run`] returned without a success.
#[derive(Debug, thiserror::Error)]
#[must_use]
pub enum Failure<E> {
    /// Shutdown came first; the work is not done.
    #[error("stopped by shutdown")]
    Stopped,
    /// The error was classified permanent.
    #[error("{0}")]
    Permanent(E),
    /// Transient errors until the attempts or the time budget ran out.
    #[error("still failing after {attempts} attempts: {error}")]
    Exhausted {
        /// The last error.
        error: E,
        /// Attempts made.
        attempts: u32,
    },
}

/// Shutdown came first: the work is not done, and nothing past it may be
/// acknowledged or committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("stopped by shutdown")]
pub struct Stopped;

impl<E> Failure<E> {
    /// The error that ended the retries, or [`Stopped`] when shutdown did.
    pub fn into_error(self) -> Result<E, Stopped> {
        match self {
            Failure::Stopped => Err(Stopped),
            Failure::Permanent(error) | Failure::Exhausted { error, .. } => Ok(error),
        }
    }
}

/// A retried call's result, with shutdown split from the error, so that a
/// caller writes `run(..).await.or_stopped()?` and handles the error alone.
pub trait Retried<T, E> {
    /// `Err(Stopped)` when shutdown came first; otherwise the success or
    /// the error that ended the retries.
    fn or_stopped(self) -> Result<Result<T, E>, Stopped>;
}

impl<T, E> Retried<T, E> for Result<T, Failure<E>> {
    fn or_stopped(self) -> Result<Result<T, E>, Stopped> {
        match self {
            Ok(value) => Ok(Ok(value)),
            Err(failure) => failure.into_error().map(Err),
        }
    }
}

/// A retry policy. Delays grow from `first` by doubling up to `max`, each
/// drawn uniformly from the upper half of its ceiling so that clients failing
/// together do not retry together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// The first delay.
    pub first: Duration,
    /// The longest delay.
    pub max: Duration,
    /// Attempts in all, the first included; `None`: unbounded.
    pub attempts: Option<u32>,
    /// Time from the first attempt after which no new attempt starts.
    pub budget: Option<Duration>,
    /// The longest wait the other side may ask for (`Retry-After`); waits
    /// it asked for do not count as attempts until they add up to this.
    pub asked_waits: Duration,
}

impl Retry {
    /// Retries transient errors until they stop or shutdown comes.
    pub const fn forever(first: Duration, max: Duration) -> Retry {
        Retry {
            first,
            max,
            attempts: None,
            budget: None,
            asked_waits: max,
        }
    }

    /// Honours a wait the other side asks for up to `cap`, and does not
    /// count such waits as attempts until they add up to `cap`.
    pub const fn with_asked_waits_up_to(mut self, cap: Duration) -> Retry {
        self.asked_waits = cap;
        self
    }

    /// At most `attempts` attempts in all.
    pub const fn with_attempts(mut self, attempts: u32) -> Retry {
        self.attempts = Some(attempts);
        self
    }

    /// No new attempt after `budget` from the first.
    pub const fn with_budget(mut self, budget: Duration) -> Retry {
        self.budget = Some(budget);
        self
    }

    /// The delay before retry number `retry` (0 for the first retry).
    pub fn delay(&self, retry: u32, verdict: Verdict) -> Duration {
        self.wait(retry, verdict).0
    }

    /// The delay before retry number `retry`, and whether it is a wait the
    /// other side asked for. An asked wait shorter than the backoff (a
    /// `Retry-After: 0`, a date already past) is raised to the backoff and
    /// is not an asked wait: it counts as an attempt, so that it cannot
    /// retry without pause or limit.
    fn wait(&self, retry: u32, verdict: Verdict) -> (Duration, Asked) {
        let backoff = self.backoff(retry);
        match verdict {
            Verdict::RetryAfter(wait) if wait >= backoff => {
                (wait.min(self.asked_waits), Asked::ByTheOtherSide)
            }
            _ => (backoff, Asked::ByThePolicy),
        }
    }

    /// The policy's own backoff before retry number `retry`.
    fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self.first.saturating_mul(1 << retry.min(20)).min(self.max);
        let low = ceiling / 2;
        low + ceiling
            .saturating_sub(low)
            .mul_f64(rand::rng().random::<f64>())
    }

    /// Runs `attempt` (given the attempt number, from 1) until it succeeds,
    /// `judge` calls an error permanent, the attempts or the budget run out,
    /// or `shutdown` is cancelled. `judge` sees every error, and is the place
    /// to log it.
    pub async fn run<T, E, F, Fut, J>(
        &self,
        shutdown: &CancellationToken,
        mut attempt: F,
        mut judge: J,
    ) -> Result<T, Failure<E>>
    where
        F: FnMut(u32) -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
        J: FnMut(&E, u32) -> Verdict,
    {
        let started = Instant::now();
        let mut number = 0;
        // Failed attempts that count against the limit, and the waits asked
        // for so far.
        let mut counted = 0;
        let mut asked = Duration::ZERO;
        loop {
            number += 1;
            let result = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Err(Failure::Stopped),
                result = attempt(number) => result,
            };
            let error = match result {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            let verdict = judge(&error, number);
            if verdict == Verdict::GiveUp {
                return Err(Failure::Permanent(error));
            }
            let (delay, by) = self.wait(counted, verdict);
            match by {
                Asked::ByTheOtherSide if asked + delay <= self.asked_waits => asked += delay,
                _ => counted += 1,
            }
            let out_of_attempts = self.attempts.is_some_and(|max| counted >= max);
            let out_of_time = self
                .budget
                .is_some_and(|budget| started.elapsed() + delay > budget);
            if out_of_attempts || out_of_time {
                return Err(Failure::Exhausted {
                    error,
                    attempts: number,
                });
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Err(Failure::Stopped),
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUICK: Retry = Retry::forever(Duration::from_millis(10), Duration::from_millis(80));

    #[tokio::test(start_paused = true)]
    async fn transient_errors_are_retried_until_success() {
        let outcome: Result<u32, Failure<&str>> = QUICK
            .run(
                &CancellationToken::new(),
                |n| async move {
                    if n < 4 {
                        Err("busy")
                    } else {
                        Ok(n)
                    }
                },
                |_, _| Verdict::Retry,
            )
            .await;
        assert_eq!(outcome.ok(), Some(4));
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_error_is_given_up_at_once() {
        let mut attempts = 0;
        let outcome: Result<(), Failure<&str>> = QUICK
            .run(
                &CancellationToken::new(),
                |_| {
                    attempts += 1;
                    async { Err("too large") }
                },
                |_, _| Verdict::GiveUp,
            )
            .await;
        assert!(matches!(outcome, Err(Failure::Permanent("too large"))));
        assert_eq!(attempts, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_and_budget_bound_the_loop() {
        let by_attempts: Result<(), Failure<&str>> = QUICK
            .with_attempts(3)
            .run(
                &CancellationToken::new(),
                |_| async { Err("busy") },
                |_, _| Verdict::Retry,
            )
            .await;
        assert!(matches!(
            by_attempts,
            Err(Failure::Exhausted { attempts: 3, .. })
        ));
        let started = Instant::now();
        let by_time: Result<(), Failure<&str>> = QUICK
            .with_budget(Duration::from_secs(1))
            .run(
                &CancellationToken::new(),
                |_| async { Err("busy") },
                |_, _| Verdict::Retry,
            )
            .await;
        assert!(matches!(by_time, Err(Failure::Exhausted { .. })));
        assert!(started.elapsed() <= Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn asked_waits_do_not_count_as_attempts_until_they_add_up_to_the_cap() {
        let started = Instant::now();
        let outcome: Result<(), Failure<&str>> = QUICK
            .with_attempts(2)
            .with_asked_waits_up_to(Duration::from_secs(100))
            .run(
                &CancellationToken::new(),
                |_| async { Err("throttled") },
                |_, _| Verdict::RetryAfter(Duration::from_secs(30)),
            )
            .await;
        // Three asked waits of 30 s fit in 100 s; then two counted attempts.
        assert!(
            matches!(outcome, Err(Failure::Exhausted { attempts: 5, .. })),
            "{outcome:?}"
        );
        assert_eq!(started.elapsed(), Duration::from_secs(120));
    }

    #[tokio::test(start_paused = true)]
    async fn an_asked_wait_shorter_than_the_backoff_is_raised_and_counted() {
        let started = Instant::now();
        let outcome: Result<(), Failure<&str>> = QUICK
            .with_attempts(3)
            .with_asked_waits_up_to(Duration::from_secs(100))
            .run(
                &CancellationToken::new(),
                |_| async { Err("throttled") },
                |_, _| Verdict::RetryAfter(Duration::ZERO),
            )
            .await;
        assert!(
            matches!(outcome, Err(Failure::Exhausted { attempts: 3, .. })),
            "{outcome:?}"
        );
        // Two waits of the backoff (5-10 ms, then 10-20 ms), not none.
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(15) && waited <= Duration::from_millis(30),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_stops_the_wait() {
        let shutdown = CancellationToken::new();
        let stopper = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            stopper.cancel();
        });
        let outcome: Result<(), Failure<&str>> =
            Retry::forever(Duration::from_secs(1), Duration::from_secs(60))
                .run(&shutdown, |_| async { Err("down") }, |_, _| Verdict::Retry)
                .await;
        assert!(matches!(outcome, Err(Failure::Stopped)));
    }

    #[test]
    fn shutdown_is_split_from_the_error() {
        let stopped: Result<(), Failure<&str>> = Err(Failure::Stopped);
        assert_eq!(stopped.or_stopped(), Err(Stopped));
        let exhausted: Result<(), Failure<&str>> = Err(Failure::Exhausted {
            error: "busy",
            attempts: 3,
        });
        assert_eq!(exhausted.or_stopped(), Ok(Err("busy")));
        let permanent: Result<(), Failure<&str>> = Err(Failure::Permanent("refused"));
        assert_eq!(permanent.or_stopped(), Ok(Err("refused")));
        let done: Result<u8, Failure<&str>> = Ok(1);
        assert_eq!(done.or_stopped(), Ok(Ok(1)));
    }

    #[test]
    fn delays_grow_are_capped_and_honour_retry_after() {
        let policy = Retry::forever(Duration::from_secs(1), Duration::from_secs(8));
        for retry in 0..10 {
            let delay = policy.delay(retry, Verdict::Retry);
            let ceiling = (Duration::from_secs(1) * (1 << retry.min(3))).min(policy.max);
            assert!(
                delay <= ceiling && delay >= ceiling / 2,
                "{retry}: {delay:?}"
            );
        }
        let asked = Verdict::RetryAfter(Duration::from_secs(3));
        assert_eq!(policy.delay(0, asked), Duration::from_secs(3));
        let too_long = Verdict::RetryAfter(Duration::from_secs(300));
        assert_eq!(policy.delay(0, too_long), policy.max);
        let patient = policy.with_asked_waits_up_to(Duration::from_secs(600));
        assert_eq!(patient.delay(0, too_long), Duration::from_secs(300));
    }
}
