//! A list page's items, read as the configuration says.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::arguments::ListApi;
use super::error::BackfillError;

/// One listed record.
pub(super) struct Item {
    pub(super) id: String,
    pub(super) updated: DateTime<Utc>,
    pub(super) record: Value,
}

/// The page's items, or why the page does not have the configured shape.
pub(super) fn items(
    api: &ListApi,
    url: &url::Url,
    page: &Value,
) -> Result<Vec<Item>, BackfillError> {
    let problem = |problem: String| BackfillError::Envelope {
        url: url.to_string(),
        problem,
        sample: page.to_string().chars().take(200).collect(),
    };
    let items = page
        .pointer(&api.items_path)
        .and_then(Value::as_array)
        .ok_or_else(|| problem(format!("no array at {}", api.items_path)))?;
    items
        .iter()
        .map(|item| {
            let id = item
                .pointer(&api.id_field)
                .and_then(Value::as_str)
                .ok_or_else(|| problem(format!("an item without a text id at {}", api.id_field)))?;
            let updated = api
                .updated_fields
                .iter()
                .find_map(|f| item.pointer(f)?.as_str()?.parse::<DateTime<Utc>>().ok())
                .ok_or_else(|| {
                    problem(format!(
                        "item {id} has no update time at {}",
                        api.updated_fields.join(" or ")
                    ))
                })?;
            Ok(Item {
                id: id.to_string(),
                updated,
                record: item.clone(),
            })
        })
        .collect()
}

pub(super) fn iso(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
