//! Verification of `X-Webhook-Signature`: HMAC-SHA256 of the raw body.
//!
//! Mobaro does not publish the encoding, so every canonical encoding of the
//! expected MAC is accepted (lowercase hex, uppercase hex, padded standard base64,
//! each with or without a `sha256=` prefix), under every configured secret. The
//! header may carry several signatures separated by commas or spaces. MACs are
//! compared in constant time; anything that does not decode to exactly 32 bytes
//! never matches.

use std::fmt;

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The request header that carries the signature.
pub const SIGNATURE_HEADER: &str = "x-webhook-signature";

const MAC_LEN: usize = 32;
const PREFIX: &str = "sha256=";

/// A webhook secret. Its bytes never appear in logs or `Debug` output.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// A secret from its bytes.
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        Secret(secret.into())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// How the matching signature was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignatureForm {
    /// Lowercase hex.
    LowerHex,
    /// Uppercase hex.
    UpperHex,
    /// Padded standard base64.
    Base64,
}

impl SignatureForm {
    /// Every form.
    pub const ALL: [SignatureForm; 3] = [
        SignatureForm::LowerHex,
        SignatureForm::UpperHex,
        SignatureForm::Base64,
    ];

    /// The form's name in configuration and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureForm::LowerHex => "hex",
            SignatureForm::UpperHex => "HEX",
            SignatureForm::Base64 => "base64",
        }
    }

    /// `mac` written in this form.
    pub fn encode(self, mac: &[u8]) -> String {
        match self {
            SignatureForm::LowerHex => hex::encode(mac),
            SignatureForm::UpperHex => hex::encode_upper(mac),
            SignatureForm::Base64 => base64::engine::general_purpose::STANDARD.encode(mac),
        }
    }
}

impl std::str::FromStr for SignatureForm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SignatureForm::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| format!("unknown signature form {s:?} (expected hex, HEX or base64)"))
    }
}

/// Which form matched, and whether it carried the `sha256=` prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Matched {
    /// The encoding.
    pub form: SignatureForm,
    /// Whether it carried `sha256=`.
    pub prefixed: bool,
}

impl Matched {
    /// A stable label for metrics and headers, e.g. `sha256=hex`.
    pub fn label(self) -> &'static str {
        match (self.prefixed, self.form) {
            (false, SignatureForm::LowerHex) => "hex",
            (false, SignatureForm::UpperHex) => "HEX",
            (false, SignatureForm::Base64) => "base64",
            (true, SignatureForm::LowerHex) => "sha256=hex",
            (true, SignatureForm::UpperHex) => "sha256=HEX",
            (true, SignatureForm::Base64) => "sha256=base64",
        }
    }
}

/// Signatures one header may carry (rotation sends two or three).
pub const MAX_CANDIDATES: usize = 8;
/// Bytes of `X-Webhook-Signature` read at most: eight prefixed base64
/// signatures with separators fit.
pub const MAX_HEADER_BYTES: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
/// Why a signature did not verify.
pub enum SignatureError {
    #[error("missing X-Webhook-Signature header")]
    /// No signature header.
    Missing,
    #[error("X-Webhook-Signature matches no configured secret")]
    /// No candidate matches a secret.
    Mismatch,
    #[error("X-Webhook-Signature carries more than {MAX_CANDIDATES} signatures or {MAX_HEADER_BYTES} bytes")]
    /// Too many candidates, or too long a header.
    Oversized,
}

/// Verifies signatures against a set of secrets (several during rotation, or one
/// per Mobaro webhook).
#[derive(Debug, Clone)]
pub struct Verifier {
    secrets: Vec<Secret>,
    accepted: Vec<SignatureForm>,
}

impl Verifier {
    /// `accepted` pins the encodings; empty means every canonical one.
    pub fn new(secrets: Vec<Secret>, accepted: Vec<SignatureForm>) -> Self {
        let accepted = if accepted.is_empty() {
            SignatureForm::ALL.to_vec()
        } else {
            accepted
        };
        Verifier { secrets, accepted }
    }

    /// Whether any secret is configured.
    pub fn has_secrets(&self) -> bool {
        !self.secrets.is_empty()
    }

    /// Checks the header's signatures against every secret. Each secret's
    /// MAC of the body is computed once, and only once some candidate
    /// decodes, so a forged request costs at most one MAC per secret
    /// whatever its header holds; oversized headers are refused unread.
    pub fn verify(&self, body: &[u8], header: Option<&str>) -> Result<Matched, SignatureError> {
        let header = header.map(str::trim).filter(|h| !h.is_empty());
        let header = header.ok_or(SignatureError::Missing)?;
        if header.len() > MAX_HEADER_BYTES {
            return Err(SignatureError::Oversized);
        }
        let candidates: Vec<&str> = header
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|c| !c.is_empty())
            .collect();
        if candidates.len() > MAX_CANDIDATES {
            return Err(SignatureError::Oversized);
        }
        let mut expected: Option<Vec<[u8; MAC_LEN]>> = None;
        for candidate in candidates {
            let Some((mac, matched)) = self.decode(candidate) else {
                continue;
            };
            let macs = expected.get_or_insert_with(|| {
                self.secrets
                    .iter()
                    .map(|secret| mac_of(&secret.0, body))
                    .collect()
            });
            // Every secret is compared, matching or not: the time does not
            // say which one matched.
            let mut found = subtle::Choice::from(0);
            for known in macs.iter() {
                found |= subtle::ConstantTimeEq::ct_eq(&known[..], &mac[..]);
            }
            if bool::from(found) {
                return Ok(matched);
            }
        }
        Err(SignatureError::Mismatch)
    }

    /// Decodes one candidate in a canonical, accepted form into a 32-byte MAC.
    fn decode(&self, candidate: &str) -> Option<([u8; MAC_LEN], Matched)> {
        let (text, prefixed) = match candidate.get(..PREFIX.len()) {
            Some(p) if p.eq_ignore_ascii_case(PREFIX) => (&candidate[PREFIX.len()..], true),
            _ => (candidate, false),
        };
        let form = if text.len() == 2 * MAC_LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            SignatureForm::LowerHex
        } else if text.len() == 2 * MAC_LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
        {
            SignatureForm::UpperHex
        } else {
            SignatureForm::Base64
        };
        if !self.accepted.contains(&form) {
            return None;
        }
        let bytes = match form {
            SignatureForm::LowerHex | SignatureForm::UpperHex => hex::decode(text).ok()?,
            SignatureForm::Base64 => base64::engine::general_purpose::STANDARD
                .decode(text)
                .ok()?,
        };
        let mac: [u8; MAC_LEN] = bytes.try_into().ok()?;
        Some((mac, Matched { form, prefixed }))
    }
}

/// The MAC Mobaro would send for `body` under `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> Vec<u8> {
    mac_of(secret, body).to_vec()
}

fn mac_of(secret: &[u8], body: &[u8]) -> [u8; MAC_LEN] {
    let mut mac = HmacSha256::new_from_slice(secret).expect("hmac takes keys of any length");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn verifier(secrets: &[&str]) -> Verifier {
        Verifier::new(secrets.iter().map(|s| Secret::new(*s)).collect(), vec![])
    }

    fn all_forms(mac: &[u8]) -> Vec<(String, Matched)> {
        let mut forms = vec![];
        for form in SignatureForm::ALL {
            forms.push((
                form.encode(mac),
                Matched {
                    form,
                    prefixed: false,
                },
            ));
            forms.push((
                format!("sha256={}", form.encode(mac)),
                Matched {
                    form,
                    prefixed: true,
                },
            ));
        }
        forms
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let text = format!("{:?}", verifier(&["hunter2"]));
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn any_configured_secret_verifies_and_whitespace_and_lists_are_accepted() {
        let v = verifier(&["old", "new"]);
        let body = b"{}";
        let sig = hex::encode(sign(b"new", body));
        assert!(v.verify(body, Some(&format!("  {sig}\n"))).is_ok());
        assert!(v.verify(body, Some(&format!("deadbeef, {sig}"))).is_ok());
        assert!(v.verify(body, Some(&format!("nope {sig}"))).is_ok());
        assert_eq!(v.verify(body, None), Err(SignatureError::Missing));
        assert_eq!(v.verify(body, Some("  ")), Err(SignatureError::Missing));
    }

    #[test]
    fn mixed_case_hex_and_unpinned_forms_are_refused() {
        let body = b"{}";
        let mac = sign(b"k", body);
        let mut mixed = hex::encode(&mac);
        mixed.replace_range(0..1, &mixed[0..1].to_uppercase());
        if mixed != hex::encode(&mac) {
            assert!(verifier(&["k"]).verify(body, Some(&mixed)).is_err());
        }
        let pinned = Verifier::new(vec![Secret::new("k")], vec![SignatureForm::Base64]);
        assert!(pinned.verify(body, Some(&hex::encode(&mac))).is_err());
        assert!(pinned
            .verify(body, Some(&SignatureForm::Base64.encode(&mac)))
            .is_ok());
    }

    #[test]
    fn headers_past_the_caps_are_refused_and_a_forged_one_costs_one_mac_per_secret() {
        let v = verifier(&["k"]);
        let body = vec![b'x'; 64 * 1024];
        let good = SignatureForm::Base64.encode(&sign(b"k", &body));
        let eight = [good.as_str(); MAX_CANDIDATES].join(",");
        assert!(v.verify(&body, Some(&eight)).is_ok());
        let nine = [good.as_str(); MAX_CANDIDATES + 1].join(",");
        assert_eq!(v.verify(&body, Some(&nine)), Err(SignatureError::Oversized));
        let long = format!("{good},{}", "A".repeat(MAX_HEADER_BYTES));
        assert_eq!(v.verify(&body, Some(&long)), Err(SignatureError::Oversized));
        // Eight well-formed forgeries over a 64 KiB body: one MAC, not eight.
        let forged = SignatureForm::Base64.encode(&[7u8; MAC_LEN]);
        let forgeries = [forged.as_str(); MAX_CANDIDATES].join(",");
        let started = std::time::Instant::now();
        for _ in 0..50 {
            assert_eq!(
                v.verify(&body, Some(&forgeries)),
                Err(SignatureError::Mismatch)
            );
        }
        let one = started.elapsed() / 50;
        let started = std::time::Instant::now();
        for _ in 0..50 {
            let _ = sign(b"k", &body);
        }
        let mac = started.elapsed() / 50;
        eprintln!("{one:?} per forged request with {MAX_CANDIDATES} signatures, {mac:?} per MAC");
        assert!(one < mac * 5, "{one:?} per forged request, {mac:?} per MAC");
    }

    #[test]
    fn no_secret_verifies_nothing() {
        let v = verifier(&[]);
        assert!(v
            .verify(b"{}", Some(&hex::encode(sign(b"", b"{}"))))
            .is_err());
    }

    proptest! {
        #[test]
        fn every_accepted_form_of_the_right_mac_verifies(
            secret in proptest::collection::vec(any::<u8>(), 0..64),
            body in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let v = Verifier::new(vec![Secret::new(secret.clone())], vec![]);
            for (signature, matched) in all_forms(&sign(&secret, &body)) {
                let got = v.verify(&body, Some(&signature));
                // Digits-only hex is both lower and upper case; either label is right.
                prop_assert!(got.is_ok(), "{signature}");
                let got = got.expect("checked");
                prop_assert_eq!(got.prefixed, matched.prefixed);
                if matched.form == SignatureForm::Base64 {
                    prop_assert_eq!(got.form, SignatureForm::Base64);
                }
            }
        }

        #[test]
        fn any_bit_flip_truncation_or_extension_fails(
            body in proptest::collection::vec(any::<u8>(), 1..256),
            flip in any::<usize>(),
            bit in 0u8..8,
        ) {
            let v = verifier(&["secret"]);
            let mac = sign(b"secret", &body);
            for form in SignatureForm::ALL {
                let good = form.encode(&mac);
                let mut flipped_body = body.clone();
                let i = flip % flipped_body.len();
                flipped_body[i] ^= 1 << bit;
                prop_assert!(v.verify(&flipped_body, Some(&good)).is_err());
                let mut extended_body = body.clone();
                extended_body.push(b' ');
                prop_assert!(v.verify(&extended_body, Some(&good)).is_err());
                prop_assert!(v.verify(&body[..body.len() - 1], Some(&good)).is_err());

                let mut flipped_mac = mac.clone();
                flipped_mac[flip % MAC_LEN] ^= 1 << bit;
                prop_assert!(v.verify(&body, Some(&form.encode(&flipped_mac))).is_err());
                prop_assert!(v.verify(&body, Some(&good[..good.len() - 1])).is_err());
                prop_assert!(v.verify(&body, Some(&good[..good.len() / 2])).is_err());
                prop_assert!(v.verify(&body, Some(&(good.clone() + "0"))).is_err());
                prop_assert!(v.verify(&body, Some(&(good.clone() + "AAAA"))).is_err());
            }
        }
    }
}
