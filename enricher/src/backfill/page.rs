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

/// An item the configuration cannot read: its position and why.
pub(super) struct Rejected {
    /// Its index in the page.
    pub(super) index: usize,
    /// What is wrong with it.
    pub(super) problem: String,
    /// Its first characters.
    pub(super) sample: String,
}

/// A page's readable items and the rejected ones.
pub(super) struct Listed {
    pub(super) items: Vec<Item>,
    pub(super) rejected: Vec<Rejected>,
}

impl Listed {
    /// Items in the page, readable or not.
    pub(super) fn len(&self) -> usize {
        self.items.len() + self.rejected.len()
    }
}

/// The page's items, or why the page does not have the configured shape
/// (no array of items where the configuration says).
pub(super) fn items(
    api: &ListApi,
    url: &url::Url,
    mut page: Value,
) -> Result<Listed, BackfillError> {
    let taken = page
        .pointer_mut(&api.items_path)
        .and_then(Value::as_array_mut)
        .map(std::mem::take);
    let Some(values) = taken else {
        return Err(BackfillError::Envelope {
            url: url.to_string(),
            problem: format!("no array at {}", api.items_path),
            sample: page.to_string().chars().take(200).collect(),
        });
    };
    let mut listed = Listed {
        items: Vec::with_capacity(values.len()),
        rejected: Vec::new(),
    };
    for (index, item) in values.into_iter().enumerate() {
        match read(api, item) {
            Ok(item) => listed.items.push(item),
            Err((problem, item)) => listed.rejected.push(Rejected {
                index,
                problem,
                sample: item.to_string().chars().take(200).collect(),
            }),
        }
    }
    Ok(listed)
}

/// One item, or what the configuration cannot read in it (with the item).
fn read(api: &ListApi, item: Value) -> Result<Item, (String, Value)> {
    let Some(id) = item.pointer(&api.id_field).and_then(Value::as_str) else {
        return Err((format!("no text id at {}", api.id_field), item));
    };
    let id = id.to_string();
    let updated = api
        .updated_fields
        .iter()
        .find_map(|f| item.pointer(f)?.as_str()?.parse::<DateTime<Utc>>().ok());
    let Some(updated) = updated else {
        return Err((
            format!(
                "item {id} has no update time at {}",
                api.updated_fields.join(" or ")
            ),
            item,
        ));
    };
    Ok(Item {
        id,
        updated,
        record: item,
    })
}

pub(super) fn iso(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
