//! Sends webhooks the way Mobaro does: a thin JSON body, signed with
//! HMAC-SHA256 in `X-Webhook-Signature`, retried when the receiver fails.

use std::time::Duration;

use base64::Engine;
use chrono::{SecondsFormat, Utc};
use hmac::{Hmac, Mac};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::Sha256;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
/// How the simulator writes signatures.
pub enum Encoding {
    /// Lowercase hex.
    Hex,
    /// Uppercase hex.
    UpperHex,
    /// Padded standard base64.
    Base64,
    /// `sha256=` followed by lowercase hex.
    PrefixedHex,
}

#[derive(Debug, Clone, clap::Args)]
/// What `send` sends, and how fast.
pub struct SendArgs {
    /// The receiver's webhook URL.
    #[arg(
        long,
        env = "MOBARO_SIM_WEBHOOK_URL",
        default_value = "http://127.0.0.1:8080/webhooks/mobaro"
    )]
    pub url: String,
    /// Secret to sign with; unsigned when absent.
    #[arg(long, env = "MOBARO_SIM_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// How the signature is written.
    #[arg(long, value_enum, default_value = "hex")]
    pub encoding: Encoding,
    /// Webhooks to send; 0 sends until interrupted. On SIGINT the sending
    /// stops and the deliveries in flight finish.
    #[arg(long, default_value_t = 100)]
    pub count: u64,
    /// Webhooks per second.
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// Resources to send, comma separated, as Mobaro names them.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "Users,Locations,Results,Assignments,Notes,Downtimes"
    )]
    pub resources: Vec<String>,
    /// Distinct objects per resource, so that updates repeat on the same objects.
    #[arg(long, default_value_t = 20)]
    pub objects: u32,
    /// Random seed, for a repeatable sequence.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print each body sent and the receiver's status on stdout, one JSON per line.
    #[arg(long)]
    pub print: bool,
    /// How long a webhook is retried while the receiver answers anything
    /// but 2xx, or cannot be reached, with a growing pause between tries.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub retry_for: Duration,
    /// Deliveries in flight at once (a slow receiver does not slow the rate
    /// until this many wait).
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
}

fn sign(secret: &str, body: &[u8], encoding: Encoding) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    let mac = mac.finalize().into_bytes();
    match encoding {
        Encoding::Hex => hex::encode(mac),
        Encoding::UpperHex => hex::encode_upper(mac),
        Encoding::Base64 => base64::engine::general_purpose::STANDARD.encode(mac),
        Encoding::PrefixedHex => format!("sha256={}", hex::encode(mac)),
    }
}

fn collection(resource: &str) -> String {
    resource.to_lowercase()
}

fn body(rng: &mut StdRng, args: &SendArgs) -> String {
    let resource = &args.resources[rng.random_range(0..args.resources.len())];
    let event = match rng.random_range(0..20) {
        0..=3 => "Created",
        4 => "Deleted",
        _ => "Updated",
    };
    // A park has few locations: Locations beyond the park's are never named.
    let objects = if resource.eq_ignore_ascii_case("Locations") {
        args.objects.min(crate::records::PARK_LOCATIONS)
    } else {
        args.objects
    };
    let object = rng.random_range(0..objects.max(1));
    let object_id = crate::listing::object_id(&collection(resource), object);
    let timestamp = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    serde_json::json!({
        "resource": resource,
        "event": event,
        "objectId": object_id,
        "timestamp": timestamp,
    })
    .to_string()
}

/// Sends webhooks at the configured rate, each delivery on its own so that
/// a slow or absent receiver does not slow the rest; a delivery answered with
/// anything but 2xx, or not answered, is retried with backoff for
/// `retry_for`, as Mobaro does. Returns (delivered, failed).
pub async fn send(args: SendArgs) -> anyhow::Result<(u64, u64)> {
    anyhow::ensure!(!args.resources.is_empty(), "no resources to send");
    anyhow::ensure!(args.rate > 0.0, "rate must be positive");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let mut rng = StdRng::seed_from_u64(args.seed);
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(args.concurrency.max(1)));
    let mut deliveries = tokio::task::JoinSet::new();
    let args = std::sync::Arc::new(args);
    let mut sent = 0;
    // SIGINT ends the sending: the deliveries in flight still finish (and
    // are printed), so a caller knows the fate of every webhook sent.
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    while args.count == 0 || sent < args.count {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = &mut interrupted => {
                tracing::info!(sent, "interrupted: finishing the deliveries in flight");
                break;
            }
        }
        sent += 1;
        let body = body(&mut rng, &args);
        let slot = slots.clone().acquire_owned().await?;
        let (client, args) = (client.clone(), args.clone());
        deliveries.spawn(async move {
            let status = deliver(&client, &args, &body).await;
            drop(slot);
            if args.print {
                println!("{}", serde_json::json!({"body": body, "status": status}));
            }
            status.is_some_and(|code| (200..300).contains(&code))
        });
        while let Some(done) = deliveries.try_join_next() {
            done?;
        }
    }
    let (mut delivered, mut failed) = (0, 0);
    for done in deliveries.join_all().await {
        if done {
            delivered += 1;
        } else {
            failed += 1;
        }
    }
    Ok((delivered, failed))
}

/// One webhook, retried until it is answered 2xx or `retry_for` passed;
/// the last status, if any answer came.
async fn deliver(client: &reqwest::Client, args: &SendArgs, body: &str) -> Option<u16> {
    let started = std::time::Instant::now();
    let mut status = None;
    let mut pause = Duration::from_millis(200);
    loop {
        let mut request = client
            .post(&args.url)
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(secret) = &args.secret {
            request = request.header(
                "X-Webhook-Signature",
                sign(secret, body.as_bytes(), args.encoding),
            );
        }
        match request.send().await {
            Ok(response) => {
                status = Some(response.status().as_u16());
                if response.status().is_success() {
                    return status;
                }
            }
            Err(error) => tracing::debug!(%error, "delivery failed"),
        }
        if started.elapsed() + pause > args.retry_for {
            return status;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}
