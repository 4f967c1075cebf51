//! The template renderer is a parser of outside input: any body, any parameter values, never a
//! panic; and what it renders for well-formed input keeps every literal and substitutes every
//! placeholder.

use std::collections::BTreeMap;

use ecp_edge::template::{ChangeKind, ConfigTemplate, ParamSpec, ParamType};
use proptest::prelude::*;
use serde_json::{Value, json};

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        ".{0,40}".prop_map(Value::String),
        "[a-z$\\{\\}_]{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z${}]{0,8}", inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn kind() -> impl Strategy<Value = ChangeKind> {
    prop_oneof![
        Just(ChangeKind::NeuronSouthDevice),
        Just(ChangeKind::EkuiperStream),
        Just(ChangeKind::EkuiperRule),
        Just(ChangeKind::NanoMqConfig),
        Just(ChangeKind::RawApiCall),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn any_template_and_values_never_panic(k in kind(), body in arb_json(), names in prop::collection::vec("[a-z_]{1,8}", 0..6), values in prop::collection::btree_map("[a-z_]{1,8}", arb_json(), 0..6)) {
        let params = names.iter().map(|n| ParamSpec::required(n.clone(), ParamType::Json)).collect();
        let t = ConfigTemplate::new(k, body, params);
        let _ = t.validate();
        let _ = t.render(&values);
    }

    #[test]
    fn placeholders_are_substituted_and_text_kept(prefix in "[a-zA-Z0-9 .:/]{0,20}", value in "[a-zA-Z0-9 .:/]{0,20}", n in any::<i32>()) {
        let t = ConfigTemplate::new(
            ChangeKind::EkuiperStream,
            json!({ "name": format!("{prefix}${{x}}"), "sql": "SELECT ${n}" }),
            vec![ParamSpec::required("x", ParamType::String), ParamSpec::required("n", ParamType::Integer)],
        );
        t.validate().unwrap();
        let values: BTreeMap<String, Value> = [("x".to_owned(), json!(value.clone())), ("n".to_owned(), json!(n))].into();
        match t.render(&values) {
            Ok(ecp_edge::template::ConfigChange::EkuiperStream { name, sql }) => {
                prop_assert_eq!(name, format!("{prefix}{value}"));
                prop_assert_eq!(sql, format!("SELECT {n}"));
            }
            Ok(other) => prop_assert!(false, "{other:?}"),
            // An empty name is refused by the change's own rules.
            Err(e) => prop_assert!(prefix.is_empty() && value.is_empty(), "{e}"),
        }
    }
}
