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
pub(crate) enum Scalar<'a> {
    Str(Cow<'a, str>),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
}

impl Scalar<'_> {
    /// The scalar as text: numbers and booleans as JSON writes them.
    pub(crate) fn text(&self) -> Cow<'_, str> {
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
    pub(crate) fn timestamp_micros(&self) -> Option<i64> {
        match self {
            Scalar::Str(s) => DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| t.with_timezone(&Utc).timestamp_micros()),
            _ => None,
        }
    }

    pub(crate) fn boolean(&self) -> Option<bool> {
        match self {
            Scalar::Bool(b) => Some(*b),
            Scalar::Str(s) => s.parse().ok(),
            _ => None,
        }
    }

    pub(crate) fn float(&self) -> Option<f64> {
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
pub(crate) type Items<'a> = Vec<Option<Scalar<'a>>>;

/// What one record yielded, by slot (see [`Selector`]).
#[derive(Debug, Default)]
pub(crate) struct Extracted<'a> {
    pub scalars: Vec<Option<Scalar<'a>>>,
    pub lists: Vec<Option<Items<'a>>>,
    pub nested: Vec<Option<Vec<Extracted<'a>>>>,
}

/// A tree of wanted paths. Every wanted place has a slot number in
/// [`Extracted`]; the same path may feed several slots.
#[derive(Debug, Default, Clone)]
pub(crate) struct Selector {
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
    pub(crate) fn scalar(&mut self, pointer: &'static str) -> usize {
        let slot = self.scalar_slots;
        self.scalar_slots += 1;
        self.root.at(&segments(pointer)).scalars.push(slot);
        slot
    }

    /// Wants the items of the array at `pointer`: scalar items as they are,
    /// object items by their `member`. Returns its slot.
    pub(crate) fn list(&mut self, pointer: &'static str, member: &'static str) -> usize {
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
    pub(crate) fn nested(&mut self, pointer: &'static str, items: Selector) -> usize {
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
    pub(crate) fn extract<'a>(&self, json: &'a str) -> Extracted<'a> {
        let mut out = self.empty();
        let mut deserializer = serde_json::Deserializer::from_str(json);
        let seed = Visit(NodeReader {
            node: &self.root,
            out: &mut out,
        });
        // An error leaves the slots filled so far; the rest stay null.
        let _ = seed.deserialize(&mut deserializer);
        out
    }
}

/// What reading one JSON value does with it. serde calls a visitor method
/// per kind of value; [`Visit`] hands every scalar to `scalar`, objects to
/// `map` and arrays to `seq`, and by default a reader skips all three.
trait Reader<'a>: Sized {
    /// False when nothing in the value is wanted: it is skipped unparsed.
    fn wants_value(&self) -> bool {
        true
    }

    fn scalar(self, _value: Scalar<'a>) {}

    fn map<'de: 'a, M: MapAccess<'de>>(self, mut map: M) -> Result<(), M::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(())
    }

    fn seq<'de: 'a, S: SeqAccess<'de>>(self, mut seq: S) -> Result<(), S::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
}

/// A [`Reader`] as serde's visitor and seed.
struct Visit<R>(R);

impl<'de: 'a, 'a, R: Reader<'a>> DeserializeSeed<'de> for Visit<R> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        if self.0.wants_value() {
            deserializer.deserialize_any(self)
        } else {
            deserializer.deserialize_ignored_any(IgnoredAny).map(drop)
        }
    }
}

impl<'de: 'a, 'a, R: Reader<'a>> Visitor<'de> for Visit<R> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.0.scalar(Scalar::Bool(v));
        Ok(())
    }
    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.0.scalar(Scalar::I64(v));
        Ok(())
    }
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.0.scalar(Scalar::U64(v));
        Ok(())
    }
    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        self.0.scalar(Scalar::F64(v));
        Ok(())
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<(), E> {
        self.0.scalar(Scalar::Str(Cow::Borrowed(v)));
        Ok(())
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.0.scalar(Scalar::Str(Cow::Owned(v.to_string())));
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<(), M::Error> {
        self.0.map(map)
    }
    fn visit_seq<S: SeqAccess<'de>>(self, seq: S) -> Result<(), S::Error> {
        self.0.seq(seq)
    }
}

/// Reads one value at `node` into `out`.
struct NodeReader<'n, 'o, 'a> {
    node: &'n Node,
    out: &'o mut Extracted<'a>,
}

impl<'a> Reader<'a> for NodeReader<'_, '_, 'a> {
    fn wants_value(&self) -> bool {
        let node = self.node;
        !node.children.is_empty() || !node.scalars.is_empty() || node.wants_items()
    }

    fn scalar(self, value: Scalar<'a>) {
        if let Some((last, rest)) = self.node.scalars.split_last() {
            for slot in rest {
                self.out.scalars[*slot] = Some(value.clone());
            }
            self.out.scalars[*last] = Some(value);
        }
    }

    fn map<'de: 'a, M: MapAccess<'de>>(self, mut map: M) -> Result<(), M::Error> {
        while let Some(key) = map.next_key_seed(KeySeed)? {
            match self.node.child(&key) {
                Some(child) => map.next_value_seed(Visit(NodeReader {
                    node: child,
                    out: &mut *self.out,
                }))?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    fn seq<'de: 'a, S: SeqAccess<'de>>(self, mut seq: S) -> Result<(), S::Error> {
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
            let result = deserializer.deserialize_any(Visit(ObjectItem {
                selector,
                out: &mut out,
            }));
            self.nested[0].push(out);
            return result;
        }
        let index = self.lists.first().map_or(0, Vec::len);
        for items in self.lists.iter_mut() {
            items.push(None);
        }
        deserializer.deserialize_any(Visit(ListItem {
            members: &self.node.lists,
            lists: self.lists,
            index,
        }))
    }
}

/// One item of wanted lists: a scalar item, or an object item's members.
struct ListItem<'n, 'o, 'a> {
    members: &'n [(usize, &'static str)],
    lists: &'o mut Vec<Items<'a>>,
    index: usize,
}

impl<'a> Reader<'a> for ListItem<'_, '_, 'a> {
    fn scalar(self, value: Scalar<'a>) {
        for items in self.lists.iter_mut() {
            items[self.index] = Some(value.clone());
        }
    }

    fn map<'de: 'a, M: MapAccess<'de>>(self, mut map: M) -> Result<(), M::Error> {
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if !self.members.iter().any(|(_, member)| *member == key) {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let mut value = None;
            map.next_value_seed(Visit(ScalarInto(&mut value)))?;
            for ((_, member), items) in self.members.iter().zip(self.lists.iter_mut()) {
                if *member == key {
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

impl<'a> Reader<'a> for ObjectItem<'_, '_, 'a> {
    fn map<'de: 'a, M: MapAccess<'de>>(self, map: M) -> Result<(), M::Error> {
        NodeReader {
            node: &self.selector.root,
            out: self.out,
        }
        .map(map)
    }
}

/// A scalar into its place; null, arrays and objects leave it empty.
struct ScalarInto<'o, 'a>(&'o mut Option<Scalar<'a>>);

impl<'a> Reader<'a> for ScalarInto<'_, 'a> {
    fn scalar(self, value: Scalar<'a>) {
        *self.0 = Some(value);
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

    /// The scalar a parsed `Value` holds.
    fn scalar_of(value: &Value) -> Option<Scalar<'static>> {
        match value {
            Value::String(s) => Some(Scalar::Str(Cow::Owned(s.clone()))),
            Value::Bool(b) => Some(Scalar::Bool(*b)),
            Value::Number(n) => Some(if let Some(u) = n.as_u64() {
                Scalar::U64(u)
            } else if let Some(i) = n.as_i64() {
                Scalar::I64(i)
            } else {
                Scalar::F64(n.as_f64()?)
            }),
            _ => None,
        }
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
            // The value as serde_json parses the same text (its float parsing
            // may differ from the generated f64 in the last digit).
            let value: Value = serde_json::from_str(&text).expect("valid json");
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
