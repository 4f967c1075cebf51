use ecp_core::prelude::*;
use ecp_core::store::MAX_DOCUMENT;
use serde_json::json;

use crate::store_conformance::Fixture;

/// Documents are kept whole by kind and key, replaced, listed per kind and removed; bad names
/// and oversized documents are refused and change nothing.
pub(crate) async fn documents_are_kept_by_kind_and_key(f: &Fixture) {
    let s = f.store.as_ref();
    let now = f.clock.now();
    let hostile = json!({ "text": "quote ' \" back \\ 中文 🚀 \u{2028} $1 --", "n": [1, 2.5, null, true] });
    s.put_document("alarm_project", "b", &json!({ "v": 1 }), now).await.unwrap();
    s.put_document("alarm_project", "a", &hostile, now).await.unwrap();
    s.put_document("other", "a", &json!("elsewhere"), now).await.unwrap();
    s.put_document("alarm_project", "b", &json!({ "v": 2 }), now).await.unwrap();
    assert_eq!(
        s.documents("alarm_project").await.unwrap(),
        vec![("a".to_owned(), hostile.clone()), ("b".to_owned(), json!({ "v": 2 }))],
        "by key, the latest of each, this kind only"
    );
    assert!(s.documents("none").await.unwrap().is_empty());

    for (kind, key) in [("", "k"), ("k", ""), ("k", &"x".repeat(201)), ("k\n", "k"), ("k", "a\u{0}b")] {
        assert!(s.put_document(kind, key, &json!(1), now).await.unwrap_err().is_invalid_input(), "{kind:?}/{key:?}");
    }
    let big = json!("x".repeat(MAX_DOCUMENT));
    assert!(matches!(s.put_document("alarm_project", "a", &big, now).await.unwrap_err(), ecp_core::Error::LimitExceeded { .. }));
    assert_eq!(s.documents("alarm_project").await.unwrap()[0].1, hostile, "a refused write changed nothing");

    assert!(s.delete_document("alarm_project", "a").await.unwrap());
    assert!(!s.delete_document("alarm_project", "a").await.unwrap());
    assert_eq!(s.documents("alarm_project").await.unwrap().len(), 1);
    assert_eq!(s.documents("other").await.unwrap().len(), 1);
}
