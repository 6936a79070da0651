//! Reads the few fields a table needs from a record's JSON text in one pass.
//!
//! A table's typed columns name a handful of paths into records of a few
//! kilobytes. Building a whole `serde_json::Value` per record to read them costs
//! more than everything else the sink does, so a [`Selector`] (a tree of the
//! wanted paths) walks the text once, keeps the scalars it meets on those paths,
//! borrowed from the text where possible, and skips everything else unbuilt.

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A JSON scalar met on a wanted path.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar<'a> {
    Str(Cow<'a, str>),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
}

impl Scalar<'_> {
    /// The scalar as text: numbers and booleans as JSON writes them.
    pub fn text(&self) -> Cow<'_, str> {
        match self {
            Scalar::Str(s) => Cow::Borrowed(s),
            Scalar::I64(n) => Cow::Owned(n.to_string()),
            Scalar::U64(n) => Cow::Owned(n.to_string()),
            Scalar::F64(n) => Cow::Owned(
                serde_json::Number::from_f64(*n).map_or_else(|| n.to_string(), |n| n.to_string()),
            ),
            Scalar::Bool(b) => Cow::Owned(b.to_string()),
        }
    }

    /// An RFC 3339 timestamp, in microseconds since the epoch.
    pub fn timestamp_micros(&self) -> Option<i64> {
        match self {
            Scalar::Str(s) => DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| t.with_timezone(&Utc).timestamp_micros()),
            _ => None,
        }
    }

    pub fn boolean(&self) -> Option<bool> {
        match self {
            Scalar::Bool(b) => Some(*b),
            Scalar::Str(s) => s.parse().ok(),
            _ => None,
        }
    }

    pub fn float(&self) -> Option<f64> {
        match self {
            Scalar::I64(n) => Some(*n as f64),
            Scalar::U64(n) => Some(*n as f64),
            Scalar::F64(n) => Some(*n),
            Scalar::Str(s) => s.parse().ok(),
            Scalar::Bool(_) => None,
        }
    }
}

/// The items of a wanted array: each a scalar item, or a member of an object item.
pub type Items<'a> = Vec<Option<Scalar<'a>>>;

/// What one record yielded, by slot (see [`Selector`]).
#[derive(Debug, Default)]
pub struct Extracted<'a> {
    pub scalars: Vec<Option<Scalar<'a>>>,
    pub lists: Vec<Option<Items<'a>>>,
    pub nested: Vec<Option<Vec<Extracted<'a>>>>,
}

/// A tree of wanted paths. Every wanted place has a slot number in
/// [`Extracted`]; the same path may feed several slots.
#[derive(Debug, Default, Clone)]
pub struct Selector {
    root: Node,
    scalar_slots: usize,
    list_slots: usize,
    nested_slots: usize,
}

#[derive(Debug, Default, Clone)]
struct Node {
    children: Vec<(&'static str, Node)>,
    /// Slots taking this value when it is a scalar.
    scalars: Vec<usize>,
    /// Slots taking this value's items when it is an array: a scalar item
    /// itself, or an object item's member of the given name.
    lists: Vec<(usize, &'static str)>,
    /// Slots taking this value's object items, each read with its own selector.
    nested: Vec<(usize, Selector)>,
}

impl Node {
    fn at(&mut self, path: &[&'static str]) -> &mut Node {
        let Some((head, rest)) = path.split_first() else {
            return self;
        };
        let index = match self.children.iter().position(|(k, _)| k == head) {
            Some(index) => index,
            None => {
                self.children.push((head, Node::default()));
                self.children.len() - 1
            }
        };
        self.children[index].1.at(rest)
    }

    fn child(&self, key: &str) -> Option<&Node> {
        self.children
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, node)| node)
    }

    fn wants_items(&self) -> bool {
        !self.lists.is_empty() || !self.nested.is_empty()
    }
}

fn segments(pointer: &'static str) -> Vec<&'static str> {
    pointer.split('/').skip(1).collect()
}

impl Selector {
    /// Wants the scalar at a JSON pointer (without escapes); returns its slot.
    pub fn scalar(&mut self, pointer: &'static str) -> usize {
        let slot = self.scalar_slots;
        self.scalar_slots += 1;
        self.root.at(&segments(pointer)).scalars.push(slot);
        slot
    }

    /// Wants the items of the array at `pointer`: scalar items as they are,
    /// object items by their `member`. Returns its slot.
    pub fn list(&mut self, pointer: &'static str, member: &'static str) -> usize {
        let slot = self.list_slots;
        self.list_slots += 1;
        let node = self.root.at(&segments(pointer));
        assert!(
            node.nested.is_empty(),
            "{pointer} is already read as nested items"
        );
        node.lists.push((slot, member));
        slot
    }

    /// Wants the object items of the array at `pointer`, each read by `items`.
    pub fn nested(&mut self, pointer: &'static str, items: Selector) -> usize {
        let slot = self.nested_slots;
        self.nested_slots += 1;
        let node = self.root.at(&segments(pointer));
        assert!(
            node.lists.is_empty() && node.nested.is_empty(),
            "{pointer} is already read as items"
        );
        node.nested.push((slot, items));
        slot
    }

    fn empty<'a>(&self) -> Extracted<'a> {
        Extracted {
            scalars: vec![None; self.scalar_slots],
            lists: vec![None; self.list_slots],
            nested: (0..self.nested_slots).map(|_| None).collect(),
        }
    }

    /// Reads the wanted values from `json`. Text that is not valid JSON yields
    /// what was read before the error (the lenient reading the tables want).
    pub fn extract<'a>(&self, json: &'a str) -> Extracted<'a> {
        let mut out = self.empty();
        let mut deserializer = serde_json::Deserializer::from_str(json);
        let seed = NodeSeed {
            node: &self.root,
            out: &mut out,
        };
        // An error leaves the slots filled so far; the rest stay null.
        let _ = seed.deserialize(&mut deserializer);
        out
    }
}

/// Reads one value at `node` into `out`.
struct NodeSeed<'n, 'o, 'a> {
    node: &'n Node,
    out: &'o mut Extracted<'a>,
}

impl<'n, 'o, 'a> NodeSeed<'n, 'o, 'a> {
    fn scalar(self, value: Scalar<'a>) {
        if let Some((last, rest)) = self.node.scalars.split_last() {
            for slot in rest {
                self.out.scalars[*slot] = Some(value.clone());
            }
            self.out.scalars[*last] = Some(value);
        }
    }
}

impl<'de: 'a, 'a> DeserializeSeed<'de> for NodeSeed<'_, '_, 'a> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        let node = self.node;
        if node.children.is_empty() && node.scalars.is_empty() && !node.wants_items() {
            deserializer.deserialize_ignored_any(IgnoredAny)?;
            return Ok(());
        }
        deserializer.deserialize_any(self)
    }
}

impl<'de: 'a, 'a> Visitor<'de> for NodeSeed<'_, '_, 'a> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.scalar(Scalar::Bool(v));
        Ok(())
    }
    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.scalar(Scalar::I64(v));
        Ok(())
    }
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.scalar(Scalar::U64(v));
        Ok(())
    }
    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        self.scalar(Scalar::F64(v));
        Ok(())
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<(), E> {
        self.scalar(Scalar::Str(Cow::Borrowed(v)));
        Ok(())
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.scalar(Scalar::Str(Cow::Owned(v.to_string())));
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<(), M::Error> {
        while let Some(key) = map.next_key_seed(KeySeed)? {
            match self.node.child(&key) {
                Some(child) => map.next_value_seed(NodeSeed {
                    node: child,
                    out: &mut *self.out,
                })?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<(), S::Error> {
        let node = self.node;
        let mut lists: Vec<Items<'a>> = node.lists.iter().map(|_| Vec::new()).collect();
        let mut nested: Vec<Vec<Extracted<'a>>> = node.nested.iter().map(|_| Vec::new()).collect();
        while seq
            .next_element_seed(ItemSeed {
                node,
                lists: &mut lists,
                nested: &mut nested,
            })?
            .is_some()
        {}
        for ((slot, _), items) in node.lists.iter().zip(lists) {
            self.out.lists[*slot] = Some(items);
        }
        for ((slot, _), items) in node.nested.iter().zip(nested) {
            self.out.nested[*slot] = Some(items);
        }
        Ok(())
    }
}

/// Reads one item of an array whose items are wanted.
struct ItemSeed<'n, 'o, 'a> {
    node: &'n Node,
    lists: &'o mut Vec<Items<'a>>,
    nested: &'o mut Vec<Vec<Extracted<'a>>>,
}

impl<'de: 'a, 'a> DeserializeSeed<'de> for ItemSeed<'_, '_, 'a> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        if let [(_, selector)] = self.node.nested.as_slice() {
            let mut out = selector.empty();
            let result = deserializer.deserialize_any(ObjectItem {
                selector,
                out: &mut out,
            });
            self.nested[0].push(out);
            return result;
        }
        let first = self.lists.first().map_or(0, Vec::len);
        for items in self.lists.iter_mut() {
            items.push(None);
        }
        deserializer.deserialize_any(ListItem {
            members: &self.node.lists,
            lists: self.lists,
            index: first,
        })
    }
}

/// One item of wanted lists: a scalar item, or an object item's members.
struct ListItem<'n, 'o, 'a> {
    members: &'n [(usize, &'static str)],
    lists: &'o mut Vec<Items<'a>>,
    index: usize,
}

impl<'a> ListItem<'_, '_, 'a> {
    fn scalar(self, value: Scalar<'a>) {
        for items in self.lists.iter_mut() {
            items[self.index] = Some(value.clone());
        }
    }
}

impl<'de: 'a, 'a> Visitor<'de> for ListItem<'_, '_, 'a> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.scalar(Scalar::Bool(v));
        Ok(())
    }
    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.scalar(Scalar::I64(v));
        Ok(())
    }
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.scalar(Scalar::U64(v));
        Ok(())
    }
    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        self.scalar(Scalar::F64(v));
        Ok(())
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<(), E> {
        self.scalar(Scalar::Str(Cow::Borrowed(v)));
        Ok(())
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.scalar(Scalar::Str(Cow::Owned(v.to_string())));
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<(), S::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<(), M::Error> {
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let wanted = self.members.iter().position(|(_, m)| *m == key);
            let Some(list) = wanted else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let value = map.next_value_seed(ScalarSeed)?;
            for ((_, member), items) in self.members.iter().zip(self.lists.iter_mut()) {
                if *member == self.members[list].1 {
                    items[self.index] = value.clone();
                }
            }
        }
        Ok(())
    }
}

/// An object item read by a selector; any other item reads as all-null.
struct ObjectItem<'s, 'o, 'a> {
    selector: &'s Selector,
    out: &'o mut Extracted<'a>,
}

impl<'de: 'a, 'a> Visitor<'de> for ObjectItem<'_, '_, 'a> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<(), S::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
    fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<(), M::Error> {
        NodeSeed {
            node: &self.selector.root,
            out: self.out,
        }
        .visit_map(map)
    }
}

/// An object key, borrowed from the text unless it holds escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }
}

/// A scalar, or None for null, arrays and objects (skipped unbuilt).
struct ScalarSeed;

impl<'de> DeserializeSeed<'de> for ScalarSeed {
    type Value = Option<Scalar<'de>>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ScalarSeed {
    type Value = Option<Scalar<'de>>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Some(Scalar::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(Scalar::I64(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(Scalar::U64(v)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Some(Scalar::F64(v)))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Scalar::Str(Cow::Borrowed(v))))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(Scalar::Str(Cow::Owned(v.to_string()))))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    const KEYS: &[&str] = &["a", "b", "id", "name"];
    const POINTERS: &[&str] = &["/a", "/b", "/a/id", "/a/b", "/b/name", "/id", "/a/b/id"];

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "[a-z\\\\\"é]{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec((prop::sample::select(KEYS), inner), 0..4).prop_map(
                    |members| Value::Object(
                        members
                            .into_iter()
                            .map(|(k, v)| (k.to_string(), v))
                            .collect()
                    )
                ),
            ]
        })
    }

    fn scalar_of(value: &Value) -> Option<Scalar<'static>> {
        let text = value.to_string();
        ScalarSeed
            .deserialize(&mut serde_json::Deserializer::from_str(&text))
            .expect("valid json")
            .map(|s| match s {
                Scalar::Str(s) => Scalar::Str(Cow::Owned(s.into_owned())),
                Scalar::I64(n) => Scalar::I64(n),
                Scalar::U64(n) => Scalar::U64(n),
                Scalar::F64(n) => Scalar::F64(n),
                Scalar::Bool(b) => Scalar::Bool(b),
            })
    }

    proptest! {
        /// Scalars agree with JSON pointers into the fully built value (whose
        /// objects keep the last of repeated keys, as the selector does).
        #[test]
        fn scalars_agree_with_json_pointers(value in json()) {
            let text = value.to_string();
            let mut selector = Selector::default();
            let slots: Vec<usize> = POINTERS.iter().map(|p| selector.scalar(p)).collect();
            let list = selector.list("/a", "name");
            let extracted = selector.extract(&text);
            for (pointer, slot) in POINTERS.iter().zip(slots) {
                let expected = value.pointer(pointer).and_then(scalar_of);
                prop_assert_eq!(&extracted.scalars[slot], &expected, "{}", pointer);
            }
            let expected_items = value.pointer("/a").and_then(Value::as_array).map(|items| {
                items
                    .iter()
                    .map(|item| match item {
                        Value::Object(map) => map.get("name").and_then(scalar_of),
                        other => scalar_of(other),
                    })
                    .collect::<Vec<_>>()
            });
            prop_assert_eq!(&extracted.lists[list], &expected_items);
        }
    }

    proptest! {
        /// Text that is not JSON, or is cut short, never panics.
        #[test]
        fn broken_text_never_panics(value in json(), cut in 0usize..200, noise in ".{0,40}") {
            let mut item = Selector::default();
            item.scalar("/id");
            item.list("/b", "name");
            let mut selector = Selector::default();
            for pointer in POINTERS {
                selector.scalar(pointer);
            }
            selector.list("/b", "id");
            selector.nested("/a", item);
            let text = value.to_string();
            let cut = text.char_indices().map(|(i, _)| i).nth(cut).unwrap_or(text.len());
            selector.extract(&text[..cut]);
            selector.extract(&noise);
            selector.extract(&format!("{}{noise}", &text[..cut]));
        }
    }

    #[test]
    fn nested_items_are_read_by_their_own_selector() {
        let mut item = Selector::default();
        let id = item.scalar("/q/id");
        let answers = item.list("/answers", "value");
        let mut selector = Selector::default();
        let values = selector.nested("/values", item);
        let extracted = selector.extract(
            r#"{"values": [{"q": {"id": "x"}, "answers": ["a", {"value": 2}]}, 3, {"q": "y"}], "other": [1]}"#,
        );
        let items = extracted.nested[values].as_ref().expect("an array");
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].scalars[id], Some(Scalar::Str("x".into())));
        assert_eq!(
            items[0].lists[answers],
            Some(vec![Some(Scalar::Str("a".into())), Some(Scalar::U64(2))])
        );
        assert_eq!(items[1].scalars[id], None);
        assert_eq!(items[2].lists[answers], None);
    }
}
