//! A token bucket: `rate` per second on average, up to `burst` at once.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
/// Shares a rate among tasks: `rate` per second on average, up to `burst` at once.
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    /// Tokens available (negative while callers wait for reserved tokens) and
    /// when they were last counted.
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    /// `rate` must be positive; the bucket starts full.
    pub fn new(rate: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            rate,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    fn refill(&self, state: &mut (f64, Instant)) {
        let now = Instant::now();
        state.0 = (state.0 + now.duration_since(state.1).as_secs_f64() * self.rate).min(self.burst);
        state.1 = now;
    }

    /// Takes a token if one is available now.
    pub fn try_acquire(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.refill(&mut state);
        if state.0 >= 1.0 {
            state.0 -= 1.0;
            true
        } else {
            false
        }
    }

    /// Waits for a token. Tokens are reserved in call order, so waiting callers
    /// are served fairly and the long-run rate never exceeds `rate`. Returns how
    /// long the caller waited.
    pub async fn acquire(&self) -> Duration {
        let wait = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            self.refill(&mut state);
            state.0 -= 1.0;
            if state.0 >= 0.0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(-state.0 / self.rate)
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_refusal() {
        let bucket = TokenBucket::new(0.001, 3);
        assert_eq!((0..10).filter(|_| bucket.try_acquire()).count(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_callers_get_exactly_the_rate() {
        let bucket = std::sync::Arc::new(TokenBucket::new(10.0, 1));
        let started = tokio::time::Instant::now();
        let tasks: Vec<_> = (0..21)
            .map(|_| {
                let bucket = bucket.clone();
                tokio::spawn(async move { bucket.acquire().await })
            })
            .collect();
        for task in tasks {
            task.await.expect("task");
        }
        // One token at once, then 20 more at 10/s.
        let elapsed = started.elapsed().as_secs_f64();
        assert!((1.95..=2.05).contains(&elapsed), "{elapsed}");
    }
}
