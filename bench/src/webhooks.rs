//! Signed webhooks as Mobaro sends them.

/// Signed webhook bodies with their signatures, made before the clock starts.
pub(crate) fn signed_bodies(secret: &str, count: usize) -> Vec<(String, String)> {
    (0..count)
        .map(|i| {
            let body = format!(
                r#"{{"resource":"Results","event":"Updated","objectId":"results/{i}-A","timestamp":"2025-01-27T10:12:44Z"}}"#
            );
            let signature = end_to_end::sign(secret, &body);
            (body, signature)
        })
        .collect()
}
