//! Mutations of well-formed samples, for the mutated-input properties of the parsers of outside
//! input (feature `mutate`): flipped and replaced bytes, inserted bytes and format tokens, deleted,
//! truncated and duplicated ranges, two samples spliced, and, while the input is still JSON, values
//! moved to other fields, replaced by edge values or removed. Inputs stay under [`MAX_LEN`] bytes,
//! so no case allocates without bound.
//!
//! Arbitrary bytes rarely get past a parser's first check; a mutated real sample does, and reaches
//! the checks behind the syntax. A property takes [`mutated`] (every kind of edit) or
//! [`json_mutated`] (only value edits, so every case is still JSON) of the samples, and the
//! [`Mutated::base`] of each case says which sample it started from:
//!
//! ```
//! use ecp_testkit::mutate;
//! use proptest::prelude::*;
//!
//! let samples = vec![br#"{"name":"a","interval":1000}"#.to_vec(), br#"{"name":"b","interval":10}"#.to_vec()];
//! let mut runner = proptest::test_runner::TestRunner::default();
//! runner
//!     .run(&mutate::json_mutated(samples), |m| {
//!         prop_assert!(m.base < 2 && m.bytes.len() <= mutate::MAX_LEN);
//!         prop_assert!(serde_json::from_slice::<serde_json::Value>(&m.bytes).is_ok());
//!         Ok(())
//!     })
//!     .unwrap();
//! ```

use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::Value;

/// The longest mutated input.
pub const MAX_LEN: usize = 4096;

/// Bytes worth inserting into text formats: JSON and exposition syntax, edge numbers, escapes.
const TOKENS: &[&[u8]] = &[
    b"\"",
    b"\\",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"null",
    b"true",
    b"-1",
    b"0",
    b"1e999",
    b"-0.0",
    b"18446744073709551616",
    b"\\u0000",
    b"\\ud800",
    b"\\\"",
    b"\n",
    b"\r\n",
    b" ",
    b"#",
    b"=",
    b"NaN",
    b"+Inf",
    b"\xff",
    b"\xc3",
    b"\0",
    b"\"\":",
];

/// JSON values to put in place of another: wrong types, edge numbers, empty and odd strings.
const VALUES: &[&str] = &[
    "null",
    "true",
    "false",
    "0",
    "-1",
    "1.5",
    "-0.0",
    "1e300",
    "18446744073709551615",
    "-9223372036854775808",
    r#""""#,
    r#"" ""#,
    r#""x""#,
    r#""infinity""#,
    r#""NaN""#,
    r#""\u0000""#,
    r#""../..""#,
    "[]",
    "{}",
    "[null]",
    r#"{"":null}"#,
];

/// One edit of a byte string; positions are [`Index`]es, so an edit applies to any length.
#[derive(Debug, Clone)]
enum Mutation {
    Set(Index, u8),
    FlipBit(Index, u8),
    Insert(Index, Vec<u8>),
    Delete(Index, usize),
    Truncate(Index),
    Duplicate(Index, usize, Index),
    /// Keeps this sample up to a position and another sample's bytes from a position.
    Splice(Index, Index, Index),
    /// Puts the JSON value at one place at another.
    Move(Index, Index),
    /// Puts one of [`VALUES`] at a place.
    Value(Index, Index),
    /// Removes a member or an element.
    Remove(Index),
}

fn json_edit() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        2 => (any::<Index>(), any::<Index>()).prop_map(|(to, from)| Mutation::Move(to, from)),
        2 => (any::<Index>(), any::<Index>()).prop_map(|(to, v)| Mutation::Value(to, v)),
        1 => any::<Index>().prop_map(Mutation::Remove),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let insertion = prop_oneof![proptest::collection::vec(any::<u8>(), 1..8), proptest::sample::select(TOKENS).prop_map(<[u8]>::to_vec),];
    prop_oneof![
        2 => (any::<Index>(), any::<u8>()).prop_map(|(at, b)| Mutation::Set(at, b)),
        2 => (any::<Index>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit(at, bit)),
        4 => (any::<Index>(), insertion).prop_map(|(at, bytes)| Mutation::Insert(at, bytes)),
        2 => (any::<Index>(), 1usize..64).prop_map(|(at, n)| Mutation::Delete(at, n)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        2 => (any::<Index>(), 1usize..256, any::<Index>()).prop_map(|(at, n, to)| Mutation::Duplicate(at, n, to)),
        1 => (any::<Index>(), any::<Index>(), any::<Index>()).prop_map(|(other, at, from)| Mutation::Splice(other, at, from)),
        4 => json_edit(),
    ]
}

fn apply(samples: &[Vec<u8>], base: usize, edits: &[Mutation]) -> Vec<u8> {
    let mut b = samples[base].clone();
    for edit in edits {
        let len = b.len();
        match edit {
            Mutation::Set(at, v) if len > 0 => b[at.index(len)] = *v,
            Mutation::FlipBit(at, bit) if len > 0 => b[at.index(len)] ^= 1 << bit,
            Mutation::Insert(at, bytes) => {
                let i = at.index(len + 1);
                b.splice(i..i, bytes.iter().copied());
            }
            Mutation::Delete(at, n) if len > 0 => {
                let i = at.index(len);
                b.drain(i..(i + n).min(len));
            }
            Mutation::Truncate(at) => b.truncate(at.index(len + 1)),
            Mutation::Duplicate(at, n, to) if len > 0 => {
                let i = at.index(len);
                let piece = b[i..(i + n).min(len)].to_vec();
                let j = to.index(len + 1);
                b.splice(j..j, piece);
            }
            Mutation::Splice(other, at, from) => {
                let o = &samples[other.index(samples.len())];
                b.truncate(at.index(len + 1));
                b.extend_from_slice(&o[from.index(o.len() + 1)..]);
            }
            Mutation::Move(..) | Mutation::Value(..) | Mutation::Remove(_) => {
                if let Some(edited) = edit_json(&b, edit) {
                    b = edited;
                }
            }
            _ => {}
        }
        b.truncate(MAX_LEN);
    }
    b
}

/// `edit` applied to `b` if `b` is JSON.
fn edit_json(b: &[u8], edit: &Mutation) -> Option<Vec<u8>> {
    let mut tree: Value = serde_json::from_slice(b).ok()?;
    let mut all = Vec::new();
    pointers(&tree, String::new(), &mut all);
    let at = |i: &Index| all[i.index(all.len())].as_str();
    match edit {
        Mutation::Move(to, from) => {
            let value = tree.pointer(at(from))?.clone();
            *tree.pointer_mut(at(to))? = value;
        }
        Mutation::Value(to, v) => *tree.pointer_mut(at(to))? = serde_json::from_str(VALUES[v.index(VALUES.len())]).ok()?,
        Mutation::Remove(i) => {
            let (parent, last) = at(i).rsplit_once('/')?;
            match tree.pointer_mut(parent)? {
                Value::Object(m) => drop(m.remove(&last.replace("~1", "/").replace("~0", "~"))),
                Value::Array(a) => drop(a.remove(last.parse().ok()?)),
                _ => return None,
            }
        }
        _ => return None,
    }
    serde_json::to_vec(&tree).ok()
}

/// The JSON pointer of every value in `v`, whose own pointer is `at`.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                pointers(c, format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")), out);
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                pointers(c, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

/// A mutated sample: which sample it started from, and its bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Mutated {
    /// The index, in the samples given, of the sample the mutations started from.
    pub base: usize,
    /// The mutated bytes, at most [`MAX_LEN`].
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for Mutated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sample {}: {:?}", self.base, String::from_utf8_lossy(&self.bytes))
    }
}

/// One of `samples` with one to four mutations of any kind applied (byte edits, splices with the
/// other samples, and value edits while the bytes are JSON).
///
/// # Panics
/// When `samples` is empty.
pub fn mutated(samples: Vec<Vec<u8>>) -> impl Strategy<Value = Mutated> {
    assert!(!samples.is_empty());
    (0..samples.len(), proptest::collection::vec(mutation(), 1..5))
        .prop_map(move |(base, edits)| Mutated { base, bytes: apply(&samples, base, &edits) })
}

/// One of `samples` (JSON) with one to three values moved, replaced or removed: still JSON (unless
/// a value moved into itself grows it past [`MAX_LEN`]), so every case reaches the checks behind
/// the syntax. A sample that is not JSON stays as it is.
///
/// # Panics
/// When `samples` is empty.
pub fn json_mutated(samples: Vec<Vec<u8>>) -> impl Strategy<Value = Mutated> {
    assert!(!samples.is_empty());
    (0..samples.len(), proptest::collection::vec(json_edit(), 1..4))
        .prop_map(move |(base, edits)| Mutated { base, bytes: apply(&samples, base, &edits) })
}

#[cfg(test)]
mod tests {
    use proptest::test_runner::{Config, TestRunner};

    use super::*;

    fn runner() -> TestRunner {
        TestRunner::new(Config { cases: 256, failure_persistence: None, ..Config::default() })
    }

    fn samples() -> Vec<Vec<u8>> {
        vec![
            br#"{"token":"t","list":[1,2,{"a/b~c":null}],"n":1.5}"#.to_vec(),
            b"not json at all".to_vec(),
            vec![b'x'; MAX_LEN + 100],
            Vec::new(),
        ]
    }

    #[test]
    fn mutations_are_bounded_and_name_their_sample() {
        let n = samples().len();
        runner()
            .run(&mutated(samples()), |m| {
                prop_assert!(m.base < n);
                prop_assert!(m.bytes.len() <= MAX_LEN);
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn json_mutations_stay_json_and_change_something() {
        let originals = samples();
        let json: Value = serde_json::from_slice(&originals[0]).unwrap();
        let changed = std::cell::Cell::new(0);
        runner()
            .run(&json_mutated(samples()), |m| {
                match m.base {
                    0 => {
                        let v = serde_json::from_slice::<Value>(&m.bytes);
                        prop_assert!(v.is_ok(), "{:?}", m);
                        changed.set(changed.get() + usize::from(v.unwrap() != json));
                    }
                    // Not JSON: left as it was (cut to the bound).
                    b => prop_assert_eq!(&m.bytes[..], &originals[b][..originals[b].len().min(MAX_LEN)]),
                }
                Ok(())
            })
            .unwrap();
        assert!(changed.get() > 0);
    }

    #[test]
    fn json_pointers_escape_keys() {
        let v: Value = serde_json::from_slice(&samples()[0]).unwrap();
        let mut all = Vec::new();
        pointers(&v, String::new(), &mut all);
        assert!(all.contains(&"/list/2/a~1b~0c".to_owned()), "{all:?}");
        assert!(all.iter().all(|p| v.pointer(p).is_some()), "{all:?}");
    }
}
