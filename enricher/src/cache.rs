//! A small TTL cache of fetched records (used for Users).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Entries kept before the cache starts over; bounds memory.
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug)]
pub(crate) struct RecordCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Value)>>,
}

impl RecordCache {
    pub(crate) fn new(ttl: Duration) -> Self {
        RecordCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn get(&self, id: &str) -> Option<Value> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let (at, value) = entries.get(id)?;
        (at.elapsed() < self.ttl).then(|| value.clone())
    }

    pub(crate) fn put(&self, id: &str, value: &Value) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, (at, _)| at.elapsed() < self.ttl);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(id.to_string(), (Instant::now(), value.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire() {
        let cache = RecordCache::new(Duration::from_millis(30));
        cache.put("users/1-A", &Value::Bool(true));
        assert_eq!(cache.get("users/1-A"), Some(Value::Bool(true)));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(cache.get("users/1-A"), None);
    }
}
