//! Every parser of outside input in ecp-core answers any string with a value or a typed error,
//! never a panic, and what it accepts round-trips.

use ecp_core::access::{Permission, Scope};
use ecp_core::audit::{AuditQuery, Operation};
use ecp_core::identity::{BuiltinRole, TokenHash, validate_display_name, validate_email};
use ecp_core::tenancy::{validate_name, validate_resource_name};
use ecp_core::{OrgId, PageRequest, ProjectId, UserId};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn ids_parse_or_refuse(s in ".{0,80}") {
        if let Ok(id) = s.parse::<OrgId>() {
            prop_assert_eq!(id.to_string().parse::<OrgId>().unwrap(), id);
        }
        let _ = s.parse::<ProjectId>();
        let _ = serde_json::from_str::<UserId>(&format!("{s:?}"));
    }

    #[test]
    fn ids_round_trip(bytes in any::<[u8; 16]>()) {
        let id = OrgId::from_uuid(uuid::Uuid::from_bytes(bytes));
        prop_assert_eq!(id.to_string().parse::<OrgId>().unwrap(), id);
        let json = serde_json::to_string(&id).unwrap();
        prop_assert_eq!(serde_json::from_str::<OrgId>(&json).unwrap(), id);
    }

    #[test]
    fn permissions_parse_or_refuse(s in "[a-z_:]{0,40}|.{0,40}") {
        if let Ok(p) = s.parse::<Permission>() {
            prop_assert_eq!(format!("{}:{}", p.kind.as_str(), p.action.as_str()), s);
        }
    }

    #[test]
    fn operations_and_names_never_panic(s in ".{0,300}") {
        if let Ok(op) = Operation::new(s.clone()) {
            prop_assert!(op.is_valid());
            prop_assert_eq!(op.as_str(), s.as_str());
        }
        let _ = serde_json::from_str::<Operation>(&format!("{s:?}"));
        if validate_name("name", &s, 50).is_ok() {
            prop_assert!(s.chars().count() <= 50 && !s.is_empty());
        }
        let _ = validate_resource_name(&s);
        let _ = validate_email(&s);
        let _ = validate_display_name(&s);
        let _ = TokenHash::from_hex(&s);
        let _ = BuiltinRole::parse(&s);
        let _ = serde_json::from_str::<Scope>(&s);
        let _ = PageRequest::after(10, s.clone()).validate();
        let _ = AuditQuery { operation: Some(s.clone()), actor_name_contains: Some(s), ..Default::default() }.validate();
    }
}
