//! Signed webhooks as Mobaro sends them.

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
