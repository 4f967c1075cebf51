//! Mutations of well-formed samples for the mutated-input properties: flipped and replaced bytes,
//! inserted bytes and format tokens, deleted, truncated and duplicated ranges, two samples spliced.
//! Inputs stay under [`MAX_LEN`] bytes, so no case allocates without bound.

use proptest::prelude::*;
use proptest::sample::Index;

/// The longest mutated input.
pub(crate) const MAX_LEN: usize = 4096;

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
            _ => {}
        }
        b.truncate(MAX_LEN);
    }
    b
}

/// A mutated sample: which sample it started from, and its bytes.
#[derive(Clone)]
pub(crate) struct Mutated {
    pub(crate) base: usize,
    pub(crate) bytes: Vec<u8>,
}

impl std::fmt::Debug for Mutated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sample {}: {:?}", self.base, String::from_utf8_lossy(&self.bytes))
    }
}

/// One of `samples` with one to four mutations applied.
pub(crate) fn mutated(samples: Vec<Vec<u8>>) -> impl Strategy<Value = Mutated> {
    assert!(!samples.is_empty());
    (0..samples.len(), proptest::collection::vec(mutation(), 1..5))
        .prop_map(move |(base, edits)| Mutated { base, bytes: apply(&samples, base, &edits) })
}
