//! What forgetting a person does to one row: the person's own rows (their
//! User records, and the events about them) are deleted; in every other
//! row, each of their identifying values is replaced by [`ERASED`], in the
//! typed columns and anywhere inside `record_json`, so that the row (a
//! Result is a safety inspection the park must keep) still counts.
//!
//! The rules, for a person known by an id and by values (name, e-mail,
//! username):
//! - a text equal to the person's id (`users/5-A` or `5-A`) is erased;
//! - a JSON object whose `id` is the person's (`{"id": …, "name": …}`) has
//!   every text inside it erased;
//! - a value found as a whole word (case aside) in any text is replaced.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, LargeStringArray, ListArray, RecordBatch, StringArray,
    StringViewArray, StructArray,
};
use arrow::datatypes::DataType;
use arrow::error::ArrowError;
use schemas::{Resource, Table, ERASED};
use serde_json::Value;

/// The prefix of a User's id in Mobaro's API.
const USER_PREFIX: &str = "users/";

/// Values shorter than this are not hunted in free text: they would match
/// unrelated words.
pub(crate) const SHORTEST_VALUE: usize = 3;

/// A User id without its collection prefix: how it is hashed and compared.
pub(crate) fn bare_id(id: &str) -> &str {
    id.strip_prefix(USER_PREFIX).unwrap_or(id)
}

/// The person being forgotten: their id and the values that identify them.
#[derive(Debug, Clone)]
pub(crate) struct Hunt {
    bare_id: String,
    values: Vec<String>,
    /// `values` in ASCII lower case.
    lowered: Vec<String>,
}

impl Hunt {
    pub(crate) fn new(id: &str) -> Hunt {
        Hunt {
            bare_id: bare_id(id.trim()).to_string(),
            values: Vec::new(),
            lowered: Vec::new(),
        }
    }

    /// Hunts `value` too (a name, an e-mail, a username); false when it is
    /// too short to hunt in free text (it is still erased where it stands
    /// next to the person's id).
    pub(crate) fn learn(&mut self, value: &str) -> bool {
        let value = value.trim();
        if value.chars().count() < SHORTEST_VALUE || value == ERASED {
            return false;
        }
        if !self.values.iter().any(|v| v.eq_ignore_ascii_case(value)) {
            self.values.push(value.to_string());
            self.lowered.push(value.to_ascii_lowercase());
        }
        true
    }

    /// How many values are hunted besides the id.
    pub(crate) fn values(&self) -> usize {
        self.values.len()
    }

    /// The values hunted besides the id.
    pub(crate) fn hunted(&self) -> &[String] {
        &self.values
    }

    /// Whether `text` holds the id or a value anywhere (case aside): the
    /// quick test before the careful one.
    fn mentioned(&self, text: &str) -> bool {
        if text.contains(self.bare_id.as_str()) && !self.bare_id.is_empty() {
            return true;
        }
        if self.values.is_empty() {
            return false;
        }
        let lower = text.to_ascii_lowercase();
        self.lowered.iter().any(|v| lower.contains(v.as_str()))
    }

    /// Whether `text` is the person's id.
    pub(crate) fn is_id(&self, text: &str) -> bool {
        !self.bare_id.is_empty() && bare_id(text.trim()) == self.bare_id
    }

    /// `text` with the person's values erased, or None when it holds none.
    pub(crate) fn text(&self, text: &str) -> Option<String> {
        if self.is_id(text) {
            return Some(ERASED.to_string());
        }
        if !self.mentioned(text) {
            return None;
        }
        let mut out: Option<String> = None;
        for value in &self.values {
            let current = out.as_deref().unwrap_or(text);
            if let Some(replaced) = replace_words(current, value) {
                out = Some(replaced);
            }
        }
        out
    }

    /// The JSON `text` with the person erased (see the module's rules), or
    /// None when it names them nowhere.
    pub(crate) fn json(&self, text: &str) -> Option<String> {
        if !self.mentioned(text) {
            return None;
        }
        let mut value: Value = serde_json::from_str(text).ok()?;
        erase_in(&mut value, &|id| self.is_id(id), &|s| self.text(s)).then(|| value.to_string())
    }
}

/// Erases, inside `value`, every object whose `id` `is_person` accepts
/// (every text inside it), and rewrites each other text `text` changes;
/// true when anything changed.
pub(crate) fn erase_in(
    value: &mut Value,
    is_person: &dyn Fn(&str) -> bool,
    text: &dyn Fn(&str) -> Option<String>,
) -> bool {
    match value {
        Value::Object(members) => {
            let names_person = members
                .get("id")
                .and_then(Value::as_str)
                .is_some_and(is_person);
            if names_person {
                erase_every_text(value);
                return true;
            }
            let mut changed = false;
            for member in members.values_mut() {
                changed |= erase_in(member, is_person, text);
            }
            changed
        }
        Value::Array(items) => {
            let mut changed = false;
            for item in items {
                changed |= erase_in(item, is_person, text);
            }
            changed
        }
        Value::String(current) => match text(current) {
            Some(replaced) => {
                *current = replaced;
                true
            }
            None => false,
        },
        _ => false,
    }
}

fn erase_every_text(value: &mut Value) {
    match value {
        Value::Object(members) => members.values_mut().for_each(erase_every_text),
        Value::Array(items) => items.iter_mut().for_each(erase_every_text),
        Value::String(text) => *text = ERASED.to_string(),
        _ => {}
    }
}

/// `text` with each whole-word occurrence of `value` (ASCII case aside)
/// replaced by [`ERASED`], or None when there is none.
fn replace_words(text: &str, value: &str) -> Option<String> {
    let (bytes, needle) = (text.as_bytes(), value.as_bytes());
    if needle.is_empty() || bytes.len() < needle.len() {
        return None;
    }
    let word = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
    let mut out = String::new();
    let (mut copied, mut at) = (0, 0);
    while at + needle.len() <= bytes.len() {
        let end = at + needle.len();
        let matches = text.is_char_boundary(at)
            && text.is_char_boundary(end)
            && bytes[at..end].eq_ignore_ascii_case(needle)
            && !word(text[..at].chars().next_back())
            && !word(text[end..].chars().next());
        if matches {
            out.push_str(&text[copied..at]);
            out.push_str(ERASED);
            copied = end;
            at = end;
        } else {
            at += 1;
        }
    }
    (copied > 0).then(|| {
        out.push_str(&text[copied..]);
        out
    })
}

/// One batch after the person was forgotten in it.
pub(crate) struct Forgotten {
    /// The rows kept, erased where they named the person.
    pub(crate) batch: RecordBatch,
    /// Rows deleted: the person's own.
    pub(crate) deleted: usize,
    /// Rows kept with the person's values erased.
    pub(crate) redacted: usize,
}

/// `batch` of `table` with the person forgotten, or None when no row names
/// them.
pub(crate) fn forget_in_batch(
    table: Table,
    hunt: &Hunt,
    batch: &RecordBatch,
) -> Result<Option<Forgotten>, ArrowError> {
    let rows = batch.num_rows();
    let own = own_rows(table, hunt, batch);
    let mut changed = vec![false; rows];
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        let rewritten = if field.name() == "record_json" {
            erase_column(column, &|s| hunt.json(s))?
        } else {
            erase_column(column, &|s| hunt.text(s))?
        };
        match rewritten {
            Some((array, rows_changed)) => {
                for (row, row_changed) in rows_changed.into_iter().enumerate() {
                    changed[row] |= row_changed;
                }
                columns.push(array);
            }
            None => columns.push(column.clone()),
        }
    }
    let deleted = own.iter().filter(|own| **own).count();
    let redacted = (0..rows).filter(|r| changed[*r] && !own[*r]).count();
    if deleted == 0 && redacted == 0 {
        return Ok(None);
    }
    let erased = RecordBatch::try_new(batch.schema(), columns)?;
    let keep: BooleanArray = own.iter().map(|own| Some(!own)).collect();
    Ok(Some(Forgotten {
        batch: arrow::compute::filter_record_batch(&erased, &keep)?,
        deleted,
        redacted,
    }))
}

/// Which rows of `batch` are the person's own: their User records, and
/// the events about them.
fn own_rows(table: Table, hunt: &Hunt, batch: &RecordBatch) -> Vec<bool> {
    let rows = batch.num_rows();
    let texts = |name: &str| {
        batch
            .column_by_name(name)
            .map(crate::reading::texts)
            .filter(|texts| texts.len() == rows)
    };
    let is_id = |texts: &Option<Vec<Option<&str>>>, row: usize| {
        texts
            .as_ref()
            .and_then(|t| t[row])
            .is_some_and(|s| hunt.is_id(s))
    };
    let object_ids = texts("object_id");
    match table {
        Table::Records(Resource::Users) => {
            let ids = texts("id");
            (0..rows)
                .map(|r| is_id(&object_ids, r) || is_id(&ids, r))
                .collect()
        }
        Table::Events => {
            let resources = texts("resource");
            (0..rows)
                .map(|r| {
                    let about_users = resources
                        .as_ref()
                        .and_then(|t| t[r])
                        .is_some_and(|s| s == Resource::Users.as_str());
                    about_users && is_id(&object_ids, r)
                })
                .collect()
        }
        Table::Records(_) => vec![false; rows],
    }
}

/// `column` with `rewrite` applied to every text in it (inside lists and
/// structs too), and which rows changed; None when nothing did.
fn erase_column(
    column: &ArrayRef,
    rewrite: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<(ArrayRef, Vec<bool>)>, ArrowError> {
    /// The rewritten values, by row; None when none changes (nothing is
    /// copied then).
    fn texts<'a>(
        values: impl Iterator<Item = Option<&'a str>>,
        rewrite: &dyn Fn(&str) -> Option<String>,
    ) -> Option<(Vec<Option<String>>, Vec<bool>)> {
        let values: Vec<Option<&str>> = values.collect();
        let rewritten: Vec<Option<String>> = values.iter().map(|v| v.and_then(rewrite)).collect();
        if rewritten.iter().all(Option::is_none) {
            return None;
        }
        let changed = rewritten.iter().map(Option::is_some).collect();
        let out = rewritten
            .into_iter()
            .zip(values)
            .map(|(new, old)| new.or(old.map(str::to_string)))
            .collect();
        Some((out, changed))
    }
    let (array, changed): (ArrayRef, Vec<bool>) = match column.data_type() {
        DataType::Utf8 => {
            let Some((out, changed)) = texts(column.as_string::<i32>().iter(), rewrite) else {
                return Ok(None);
            };
            (Arc::new(StringArray::from(out)), changed)
        }
        DataType::LargeUtf8 => {
            let Some((out, changed)) = texts(column.as_string::<i64>().iter(), rewrite) else {
                return Ok(None);
            };
            (Arc::new(LargeStringArray::from(out)), changed)
        }
        DataType::Utf8View => {
            let Some((out, changed)) = texts(column.as_string_view().iter(), rewrite) else {
                return Ok(None);
            };
            (Arc::new(StringViewArray::from(out)), changed)
        }
        DataType::List(field) => {
            let list = column.as_list::<i32>();
            let Some((values, inner)) = erase_column(list.values(), rewrite)? else {
                return Ok(None);
            };
            let changed = list
                .offsets()
                .windows(2)
                .map(|w| inner[w[0] as usize..w[1] as usize].iter().any(|c| *c))
                .collect();
            let rebuilt = ListArray::try_new(
                field.clone(),
                list.offsets().clone(),
                values,
                list.nulls().cloned(),
            )?;
            (Arc::new(rebuilt), changed)
        }
        DataType::Struct(fields) => {
            let parts = column.as_struct();
            let mut changed = vec![false; parts.len()];
            let mut children = Vec::with_capacity(fields.len());
            let mut any = false;
            for child in parts.columns() {
                match erase_column(child, rewrite)? {
                    Some((array, rows)) => {
                        any = true;
                        for (row, c) in rows.into_iter().enumerate() {
                            changed[row] |= c;
                        }
                        children.push(array);
                    }
                    None => children.push(child.clone()),
                }
            }
            if !any {
                return Ok(None);
            }
            let rebuilt = StructArray::try_new(fields.clone(), children, parts.nulls().cloned())?;
            (Arc::new(rebuilt), changed)
        }
        _ => return Ok(None),
    };
    Ok(changed.iter().any(|c| *c).then_some((array, changed)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{Field, Schema};

    fn hunt() -> Hunt {
        let mut hunt = Hunt::new("users/5-A");
        assert!(hunt.learn("Ava Hansen"));
        assert!(hunt.learn("ava.hansen@park.example"));
        assert!(hunt.learn("ava12"));
        assert!(!hunt.learn("Av"), "too short for free text");
        hunt
    }

    #[test]
    fn ids_are_whole_values_and_values_whole_words() {
        let hunt = hunt();
        assert_eq!(hunt.text("users/5-A").as_deref(), Some(ERASED));
        assert_eq!(hunt.text("5-A").as_deref(), Some(ERASED));
        assert_eq!(hunt.text("users/15-A"), None);
        assert_eq!(hunt.text("assets/5-AB"), None);
        assert_eq!(
            hunt.text("Call AVA HANSEN, or ava12.").as_deref(),
            Some("Call [erased], or [erased].")
        );
        assert_eq!(hunt.text("ava123 and Savannah"), None);
        assert_eq!(hunt.text("Ava Hansen").as_deref(), Some(ERASED));
    }

    #[test]
    fn objects_naming_the_person_are_erased_whole_and_other_text_by_word() {
        let hunt = hunt();
        let record = r#"{"id":"results/9-A","user":{"id":"users/5-A","name":"A. Hansen"},"asset":{"id":"assets/5-A","name":"Car 1"},"values":[{"answers":["Checked with ava12"]}]}"#;
        let erased: Value = serde_json::from_str(&hunt.json(record).expect("named")).expect("JSON");
        assert_eq!(erased["user"]["id"], ERASED);
        assert_eq!(erased["user"]["name"], ERASED, "beside the id");
        assert_eq!(erased["asset"]["id"], "assets/5-A");
        assert_eq!(erased["values"][0]["answers"][0], "Checked with [erased]");
        assert_eq!(erased["id"], "results/9-A");
        assert_eq!(
            hunt.json(r#"{"id":"results/9-A","user":{"id":"users/6-A"}}"#),
            None
        );
    }

    #[test]
    fn the_persons_own_rows_go_and_others_keep_their_counts() {
        let hunt = hunt();
        let schema = Arc::new(Schema::new(vec![
            Field::new("resource", DataType::Utf8, false),
            Field::new("object_id", DataType::Utf8, false),
            Field::new(
                "tags",
                DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                true,
            ),
        ]));
        let mut list = arrow::array::ListBuilder::new(arrow::array::StringBuilder::new());
        for row in [vec!["x"], vec!["Ava Hansen", "y"], vec![]] {
            for item in row {
                list.values().append_value(item);
            }
            list.append(true);
        }
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["Users", "Users", "Results"])),
                Arc::new(StringArray::from(vec![
                    "users/5-A",
                    "users/6-A",
                    "results/1-A",
                ])),
                Arc::new(list.finish()),
            ],
        )
        .expect("a batch");
        let forgotten = forget_in_batch(Table::Events, &hunt, &batch)
            .expect("erases")
            .expect("names the person");
        assert_eq!((forgotten.deleted, forgotten.redacted), (1, 1));
        assert_eq!(forgotten.batch.num_rows(), 2);
        let kept = forgotten.batch.column(2).as_list::<i32>().value(0);
        assert_eq!(kept.as_string::<i32>().value(0), ERASED);
        let untouched = RecordBatch::try_new(
            batch.schema(),
            batch.columns().iter().map(|c| c.slice(2, 1)).collect(),
        )
        .expect("a batch");
        assert!(forget_in_batch(Table::Events, &hunt, &untouched)
            .expect("reads")
            .is_none());
    }
}
