//! Property tests of the CSV import parser: hostile bytes never panic, every data line is answered
//! exactly once (a row or a failure) with its right line number, and passwords never reach a reason.

use ecp_edge::import::{ImportLimits, parse_csv};
use proptest::prelude::*;

const HEADER: &str = "category,name,nodeType,endpoint,scheme,tagName,username,password\n";

/// One generated line and whether it is valid.
fn line() -> impl Strategy<Value = (String, bool)> {
    let good = (1u32..1_000_000, proptest::collection::vec("[a-z0-9]{1,10}", 0..=10), any::<bool>()).prop_map(|(n, tags, creds)| {
        let (u, p) = if creds { ("admin", "pw-SECRET-1") } else { ("", "") };
        (format!("4,edge-{n},Direct,10.0.{}.{}:8085,http,{},{u},{p}", n % 250, n % 200, tags.join(";")), true)
    });
    let bad = prop_oneof![
        Just("7,bad-cat,Direct,10.0.0.1:8085,http,,,".to_owned()),
        Just("4,bad-url,Direct,,http,,,".to_owned()),
        Just("4,short,Direct".to_owned()),
        Just("4,pw-only,Direct,10.0.0.1:8085,http,,,pw-SECRET-1".to_owned()),
        Just("4,too-many,Direct,h:1,http,1;2;3;4;5;6;7;8;9;10;11,,".to_owned()),
        Just("4,proxy,Proxy,h:1,http,,,".to_owned()),
    ]
    .prop_map(|l| (l, false));
    prop_oneof![3 => good, 1 => bad]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let mut with_header = HEADER.as_bytes().to_vec();
        with_header.extend_from_slice(&bytes);
        for input in [bytes.as_slice(), with_header.as_slice()] {
            if let Ok(p) = parse_csv(input, &ImportLimits::builder().max_bytes(4096).max_rows(10_000).build().unwrap()) {
                prop_assert!(p.failures.iter().all(|f| f.line >= 2));
                prop_assert!(p.rows.iter().all(|r| r.line >= 2));
            }
        }
    }

    #[test]
    fn every_line_answered_once_at_its_number(lines in proptest::collection::vec(line(), 0..60)) {
        let mut text = HEADER.to_owned();
        for (l, _) in &lines {
            text.push_str(l);
            text.push('\n');
        }
        let p = parse_csv(text.as_bytes(), &ImportLimits::default()).unwrap();
        prop_assert_eq!(p.rows.len() + p.failures.len(), lines.len());
        let mut seen_names = std::collections::HashSet::new();
        for (i, (l, valid)) in lines.iter().enumerate() {
            let number = i as u64 + 2;
            let name = l.split(',').nth(1).unwrap().to_owned();
            let imported = p.rows.iter().any(|r| r.line == number);
            let failed = p.failures.iter().any(|f| f.line == number);
            prop_assert!(imported != failed, "line {} answered {} times", number, u8::from(imported) + u8::from(failed));
            let expect_ok = *valid && seen_names.insert(name.to_lowercase());
            prop_assert_eq!(imported, expect_ok, "line {}: {}", number, l);
        }
        prop_assert!(p.failures.iter().all(|f| !f.reason.contains("SECRET")));
    }

    /// One stray quote opening any field of any line, whatever the line endings: every line is
    /// still answered exactly once, the lines before it as if it were not there, and nothing from
    /// it on is imported.
    #[test]
    fn a_stray_quote_leaves_no_line_unanswered(
        lines in proptest::collection::vec(line(), 1..40),
        at in any::<proptest::sample::Index>(),
        field in 0usize..8,
        ending in prop_oneof![Just("\n"), Just("\r\n"), Just("\r")],
        final_ending in any::<bool>(),
    ) {
        let broken = at.index(lines.len());
        let mut text = HEADER.trim_end().to_owned() + ending;
        for (i, (l, _)) in lines.iter().enumerate() {
            let l = if i == broken {
                let mut fields: Vec<&str> = l.split(',').collect();
                let f = field.min(fields.len() - 1);
                let opened = format!("\"{}", fields[f]);
                fields[f] = &opened;
                fields.join(",")
            } else {
                l.clone()
            };
            text.push_str(&l);
            if i + 1 < lines.len() || final_ending {
                text.push_str(ending);
            }
        }
        let p = parse_csv(text.as_bytes(), &ImportLimits::default()).unwrap();
        let mut answered: Vec<u64> = p.rows.iter().map(|r| r.line).chain(p.failures.iter().map(|f| f.line)).collect();
        answered.sort_unstable();
        let expected: Vec<u64> = (2..lines.len() as u64 + 2).collect();
        prop_assert_eq!(answered, expected);
        let first_broken = broken as u64 + 2;
        prop_assert!(p.rows.iter().all(|r| r.line < first_broken), "a row at or after the stray quote was imported");
        prop_assert!(p.failures.iter().any(|f| f.line == first_broken && f.reason.contains("unbalanced quote")));
        let shown = format!("{p:?}");
        prop_assert!(!shown.contains("SECRET"));
    }
}
