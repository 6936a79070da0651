//! Mobaro accounts: one deployment serves several, each with its own
//! webhook secrets and API key, and every event carries its account.

/// The account of a deployment configured without an accounts file, and of
/// rows written before accounts existed (their `account` column is null).
pub const DEFAULT_ACCOUNT: &str = "default";

/// Whether `id` is a usable account id: 1 to 63 characters, lowercase
/// letters, digits, `-` and `_`, starting with a letter or digit. It is a
/// URL path segment, a Kafka key prefix and a metric label.
pub fn is_account_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && id.len() <= 63
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// The Kafka key of `object_id`'s events in `account`: the object id alone
/// in the default account (as before accounts existed), `{account}/{id}`
/// otherwise, so that two accounts' objects of one id are two keys.
pub fn object_key(account: &str, object_id: &str) -> String {
    if account == DEFAULT_ACCOUNT {
        object_id.to_string()
    } else {
        format!("{account}/{object_id}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids_are_short_lowercase_path_segments() {
        for good in ["default", "park-a", "p1", "eu_west"] {
            assert!(is_account_id(good), "{good}");
        }
        for bad in ["", "Park", "-a", "a/b", "a b", "..", &"a".repeat(64)] {
            assert!(!is_account_id(bad), "{bad}");
        }
    }

    #[test]
    fn the_default_accounts_keys_are_the_object_ids() {
        assert_eq!(object_key(DEFAULT_ACCOUNT, "o-1"), "o-1");
        assert_eq!(object_key("park-a", "o-1"), "park-a/o-1");
    }
}
