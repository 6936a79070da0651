//! Offset ranges of one partition of the source topic.

use std::fmt;

/// The offsets `first..=last` of one partition: what a batch covers and
/// its files are named after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OffsetRange {
    /// The first offset.
    pub first: i64,
    /// The last offset, included.
    pub last: i64,
}

impl OffsetRange {
    /// `first..=last`.
    pub fn new(first: i64, last: i64) -> OffsetRange {
        OffsetRange { first, last }
    }

    /// The offset after the range: where consumption goes on.
    pub fn next(&self) -> i64 {
        self.last + 1
    }
}

impl fmt::Display for OffsetRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..={}", self.first, self.last)
    }
}

/// A range equals the pair `(first, last)`.
impl PartialEq<(i64, i64)> for OffsetRange {
    fn eq(&self, (first, last): &(i64, i64)) -> bool {
        self.first == *first && self.last == *last
    }
}
