//! A closed-loop HTTP load: N connections, each sending the next request as soon
//! as the previous one was answered.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Signed webhook bodies, made before the clock starts.
pub fn signed_bodies(secret: &str, count: usize) -> Vec<(String, String)> {
    (0..count)
        .map(|i| {
            let body = format!(
                r#"{{"resource":"Results","event":"Updated","objectId":"results/{}-A","timestamp":"2025-01-27T10:12:44Z"}}"#,
                i
            );
            let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
            mac.update(body.as_bytes());
            (body, hex::encode(mac.finalize().into_bytes()))
        })
        .collect()
}

#[derive(Debug)]
pub struct LoadResult {
    pub requests: usize,
    pub errors: usize,
    pub elapsed: Duration,
    pub latencies: Vec<Duration>,
}

impl LoadResult {
    pub fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    pub fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let index =
            ((self.latencies.len() as f64 * p).ceil() as usize).clamp(1, self.latencies.len()) - 1;
        self.latencies[index]
    }
}

/// Warms up for a fifth of `duration`, then measures for `duration`.
pub async fn run(
    url: &str,
    bodies: &[(String, String)],
    connections: usize,
    duration: Duration,
) -> anyhow::Result<LoadResult> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()?;
    let bodies = Arc::new(bodies.to_vec());
    let next = Arc::new(AtomicUsize::new(0));
    let warm_until = Instant::now() + duration / 5;
    let stop_at = warm_until + duration;
    let mut tasks = vec![];
    for _ in 0..connections {
        let (client, bodies, next, url) = (
            client.clone(),
            bodies.clone(),
            next.clone(),
            url.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = vec![];
            let mut errors = 0;
            loop {
                let started = Instant::now();
                if started >= stop_at {
                    break;
                }
                let (body, signature) =
                    &bodies[next.fetch_add(1, Ordering::Relaxed) % bodies.len()];
                let response = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("x-webhook-signature", signature)
                    .body(body.clone())
                    .send()
                    .await;
                let ok = response.is_ok_and(|r| r.status() == 202);
                if started >= warm_until {
                    if ok {
                        latencies.push(started.elapsed());
                    } else {
                        errors += 1;
                    }
                }
            }
            (latencies, errors)
        }));
    }
    let mut result = LoadResult {
        requests: 0,
        errors: 0,
        elapsed: duration,
        latencies: vec![],
    };
    for task in tasks {
        let (latencies, errors) = task.await?;
        result.errors += errors;
        result.latencies.extend(latencies);
    }
    result.requests = result.latencies.len();
    result.latencies.sort();
    Ok(result)
}
