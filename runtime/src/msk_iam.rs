//! AWS MSK's IAM authentication over SASL OAUTHBEARER: the token is a
//! SigV4-presigned `kafka-cluster:Connect` request to
//! `https://kafka.{region}.amazonaws.com/`, base64url-encoded, valid 15
//! minutes, signed with credentials from the AWS chain (environment, web
//! identity as on EKS with IRSA, ECS, instance metadata). librdkafka asks
//! for a new token before the current one expires.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// How long a token is valid, as AWS's own signers make them.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(900);

/// The SHA-256 of an empty payload.
const EMPTY_PAYLOAD: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Signing credentials.
#[derive(Clone)]
pub struct Credentials {
    /// The access key id.
    pub key_id: String,
    /// The secret access key.
    pub secret: String,
    /// The session token of temporary credentials.
    pub token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").finish_non_exhaustive()
    }
}

/// A SigV4 query-string presigning of a GET with only `host` signed.
pub struct Presign<'a> {
    /// `https://host` without a trailing slash.
    pub host: &'a str,
    /// The path, `/` or `/key`.
    pub path: &'a str,
    /// Query parameters signed besides the `X-Amz-*` ones.
    pub params: &'a [(&'a str, &'a str)],
    /// The region.
    pub region: &'a str,
    /// The signing name of the service (`s3`, `kafka-cluster`).
    pub service: &'a str,
    /// The payload hash: `UNSIGNED-PAYLOAD` for S3, the empty payload's
    /// hash otherwise.
    pub payload: &'a str,
    /// Seconds the URL is valid.
    pub expires: u64,
    /// The signing time.
    pub at: SystemTime,
}

/// RFC 3986 encoding as SigV4 wants it: unreserved characters as they
/// are, every other byte `%XX`.
fn encode(text: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(text, KEEP).to_string()
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// The request presigned with `credentials`: its URL.
pub fn presign(request: &Presign<'_>, credentials: &Credentials) -> String {
    let seconds = request
        .at
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    let at = chrono::DateTime::from_timestamp(seconds, 0).unwrap_or_default();
    let (date, stamp) = (
        at.format("%Y%m%d").to_string(),
        at.format("%Y%m%dT%H%M%SZ").to_string(),
    );
    let scope = format!("{date}/{}/{}/aws4_request", request.region, request.service);
    let credential = format!("{}/{scope}", credentials.key_id);
    let expires = request.expires.to_string();
    let mut params: Vec<(&str, &str)> = request.params.to_vec();
    params.extend([
        ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
        ("X-Amz-Credential", credential.as_str()),
        ("X-Amz-Date", stamp.as_str()),
        ("X-Amz-Expires", expires.as_str()),
        ("X-Amz-SignedHeaders", "host"),
    ]);
    if let Some(token) = &credentials.token {
        params.push(("X-Amz-Security-Token", token));
    }
    let mut encoded: Vec<(String, String)> =
        params.iter().map(|(k, v)| (encode(k), encode(v))).collect();
    encoded.sort();
    let query = encoded
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let host = request
        .host
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let canonical = format!(
        "GET\n{}\n{query}\nhost:{host}\n\nhost\n{}",
        request.path, request.payload
    );
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let key = [request.region, request.service, "aws4_request"]
        .iter()
        .fold(
            hmac(format!("AWS4{}", credentials.secret).as_bytes(), &date),
            |key, part| hmac(&key, part),
        );
    let signature = hex::encode(hmac(&key, &to_sign));
    format!(
        "{}{}?{query}&X-Amz-Signature={signature}",
        request.host, request.path
    )
}

/// An MSK IAM token for `region` signed at `at`: the base64url (no
/// padding) of the presigned `kafka-cluster:Connect` URL, with the client's
/// name appended as `User-Agent` as AWS's signers do; and when it expires.
pub fn token(region: &str, credentials: &Credentials, at: SystemTime) -> (String, SystemTime) {
    let host = format!("https://kafka.{region}.amazonaws.com");
    let url = presign(
        &Presign {
            host: &host,
            path: "/",
            params: &[("Action", "kafka-cluster:Connect")],
            region,
            service: "kafka-cluster",
            payload: EMPTY_PAYLOAD,
            expires: TOKEN_LIFETIME.as_secs(),
            at,
        },
        credentials,
    );
    let url = format!(
        "{url}&User-Agent={}",
        encode(concat!("mobaro-lake/", env!("CARGO_PKG_VERSION")))
    );
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(url);
    (token, at + TOKEN_LIFETIME)
}

/// How often the credentials are read again from the chain (which caches
/// them and renews temporary ones before they expire).
const CREDENTIALS_REFRESH: Duration = Duration::from_secs(60);

/// Signs MSK tokens for one region with the latest credentials of the AWS
/// chain. librdkafka asks for tokens on its own threads and waits for the
/// answer, so the credentials (which may need a network call: web
/// identity, container or instance metadata) are fetched ahead by a task,
/// never while librdkafka waits.
#[derive(Debug)]
pub struct MskSigner {
    region: String,
    credentials: RwLock<Credentials>,
    signed: AtomicU64,
}

impl MskSigner {
    /// A signer for `region` holding credentials read once from the chain,
    /// and a task that reads them again every minute while the signer is
    /// in use.
    pub async fn start(region: &str) -> Result<Arc<Self>, object_store::Error> {
        let provider = object_store::aws::AmazonS3Builder::from_env()
            // The builder wants a bucket; the credential chain does not use it.
            .with_bucket_name("unused")
            .build()?
            .credentials()
            .clone();
        let first = read(&provider).await?;
        let signer = Arc::new(Self::with_credentials(region, first));
        let weak = Arc::downgrade(&signer);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(CREDENTIALS_REFRESH).await;
                let Some(signer) = weak.upgrade() else { return };
                match read(&provider).await {
                    Ok(fresh) => {
                        *signer
                            .credentials
                            .write()
                            .unwrap_or_else(|p| p.into_inner()) = fresh
                    }
                    Err(error) => tracing::warn!(
                        %error,
                        "reading AWS credentials for MSK failed; tokens are signed with the last ones until a read succeeds"
                    ),
                }
            }
        });
        Ok(signer)
    }

    /// A signer with fixed credentials.
    pub fn with_credentials(region: &str, credentials: Credentials) -> Self {
        Self {
            region: region.to_string(),
            credentials: RwLock::new(credentials),
            signed: AtomicU64::new(0),
        }
    }

    /// A token signed now, and when it expires.
    pub fn token(&self) -> (String, SystemTime) {
        let credentials = self
            .credentials
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        self.signed.fetch_add(1, Ordering::Relaxed);
        token(&self.region, &credentials, SystemTime::now())
    }

    /// Tokens signed so far.
    pub fn signed(&self) -> u64 {
        self.signed.load(Ordering::Relaxed)
    }
}

async fn read(
    provider: &object_store::aws::AwsCredentialProvider,
) -> Result<Credentials, object_store::Error> {
    let credential = provider.get_credential().await?;
    Ok(Credentials {
        key_id: credential.key_id.clone(),
        secret: credential.secret_key.clone(),
        token: credential.token.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn documented() -> Credentials {
        Credentials {
            key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            token: None,
        }
    }

    /// AWS's documented example of a presigned URL (Signature Version 4,
    /// "Authenticating Requests: Using Query Parameters"): GET
    /// `examplebucket/test.txt` on 24 May 2013, valid 86400 s.
    #[test]
    fn the_signature_is_the_one_aws_documents() {
        let url = presign(
            &Presign {
                host: "https://examplebucket.s3.amazonaws.com",
                path: "/test.txt",
                params: &[],
                region: "us-east-1",
                service: "s3",
                payload: "UNSIGNED-PAYLOAD",
                expires: 86400,
                at: UNIX_EPOCH + Duration::from_secs(1_369_353_600),
            },
            &documented(),
        );
        assert_eq!(
            url,
            "https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256\
&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        );
    }

    /// The MSK token decodes to a `kafka-cluster:Connect` URL for the
    /// region's endpoint, with the session token signed, valid 15 minutes.
    #[test]
    fn an_msk_token_is_a_presigned_connect_url() {
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let credentials = Credentials {
            token: Some("session/token+1".into()),
            ..documented()
        };
        let (token, expires) = token("eu-west-1", &credentials, at);
        assert_eq!(expires, at + Duration::from_secs(900));
        assert!(!token.contains('=') && !token.contains('+') && !token.contains('/'));
        let url = String::from_utf8(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(&token)
                .expect("base64url"),
        )
        .expect("utf-8");
        assert!(
            url.starts_with("https://kafka.eu-west-1.amazonaws.com/?Action=kafka-cluster%3AConnect&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20231114%2Feu-west-1%2Fkafka-cluster%2Faws4_request&X-Amz-Date=20231114T221320Z&X-Amz-Expires=900&X-Amz-Security-Token=session%2Ftoken%2B1&X-Amz-SignedHeaders=host&X-Amz-Signature="),
            "{url}"
        );
        assert!(url.contains("&User-Agent=mobaro-lake%2F"), "{url}");
        // The signature changes with the secret, and only the holder of the
        // secret can make it.
        let other = Credentials {
            secret: "another".into(),
            ..credentials.clone()
        };
        assert_ne!(super::token("eu-west-1", &other, at).0, token);
        assert!(!format!("{credentials:?}").contains("EXAMPLEKEY"));
    }
}
