//! Configuration templates: typed changes with `${param}` placeholders, rendered per target from a
//! parameter grid.
//!
//! A template is one of five kinds of change (a Neuron south device with its groups and tags, an
//! eKuiper stream, an eKuiper rule, a NanoMQ configuration fragment, a raw API call), written as the
//! change's JSON with `${name}` placeholders in its strings. A string that is exactly one
//! placeholder takes the parameter's typed value (`"interval": "${ms}"` becomes a number); a
//! placeholder inside a longer string is replaced by the value's text. `$${` writes a literal `${`.
//!
//! Parameters are declared with a type and an optional default (at most 50 per template, as the
//! product). A [`ParamGrid`] gives a default row and rows per target (by service id or name);
//! rendering for a target merges declared defaults, the grid's default row and the target's row,
//! checks every value against its type, substitutes, and checks the result as a typed
//! [`ConfigChange`]. Every error names the target and the parameter.

use std::collections::{BTreeMap, BTreeSet};

pub use ecp_edge_api::{ChangeKind, ConfigChange, GroupSpec, TagSpec};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

/// The most parameters one template may declare.
pub const MAX_PARAMS: usize = 50;
/// The largest template body, in bytes of JSON.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

fn invalid(field: &'static str, reason: impl Into<String>) -> Error {
    Error::Core(ecp_core::Error::invalid(field, reason.into()))
}

/// The type of a parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamType {
    /// Text.
    String,
    /// A whole number.
    Integer,
    /// Any number.
    Number,
    /// `true` or `false`.
    Boolean,
    /// Any JSON value.
    Json,
}

impl ParamType {
    fn accepts(self, v: &Value) -> bool {
        match self {
            ParamType::String => v.is_string(),
            ParamType::Integer => v.is_i64() || v.is_u64(),
            ParamType::Number => v.is_number(),
            ParamType::Boolean => v.is_boolean(),
            ParamType::Json => true,
        }
    }
}

/// A declared parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamSpec {
    /// Its name: a letter or `_`, then letters, digits or `_`, at most 64.
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub kind: ParamType,
    /// Its value where no grid row gives one; without it the parameter is required.
    #[serde(default)]
    pub default: Option<Value>,
    /// What it is for.
    #[serde(default)]
    pub description: String,
}

impl ParamSpec {
    /// A required parameter.
    pub fn required(name: impl Into<String>, kind: ParamType) -> Self {
        Self { name: name.into(), kind, default: None, description: String::new() }
    }

    /// A parameter with a default.
    pub fn with_default(name: impl Into<String>, kind: ParamType, default: Value) -> Self {
        Self { name: name.into(), kind, default: Some(default), description: String::new() }
    }
}

fn valid_param_name(n: &str) -> bool {
    let mut chars = n.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && n.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A configuration template: a kind, a body with placeholders, and its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigTemplate {
    /// What it changes.
    pub kind: ChangeKind,
    /// The change, as JSON, with `${name}` placeholders in strings (without the `kind` field).
    pub body: Value,
    /// Its parameters.
    #[serde(default)]
    pub params: Vec<ParamSpec>,
}

impl ConfigTemplate {
    /// A template; see [`validate`](Self::validate).
    pub fn new(kind: ChangeKind, body: Value, params: Vec<ParamSpec>) -> Self {
        Self { kind, body, params }
    }

    /// Checks the template: at most 50 well-named, distinct parameters with defaults of their type;
    /// a body under 256 KiB whose every placeholder is well-formed and declared.
    ///
    /// # Errors
    /// `InvalidInput` naming what is wrong.
    pub fn validate(&self) -> Result<()> {
        if self.params.len() > MAX_PARAMS {
            return Err(invalid("params", format!("at most {MAX_PARAMS} parameters, got {}", self.params.len())));
        }
        let mut declared = BTreeSet::new();
        for p in &self.params {
            if !valid_param_name(&p.name) {
                return Err(invalid("params", format!("{:?} is not a parameter name", truncate(&p.name))));
            }
            if !declared.insert(p.name.as_str()) {
                return Err(invalid("params", format!("{} is declared twice", p.name)));
            }
            if p.default.as_ref().is_some_and(|d| !p.kind.accepts(d)) {
                return Err(invalid("params", format!("the default of {} is not of its type", p.name)));
            }
        }
        if !self.body.is_object() {
            return Err(invalid("body", "must be a JSON object"));
        }
        if self.body.to_string().len() > MAX_BODY_BYTES {
            return Err(invalid("body", format!("larger than {MAX_BODY_BYTES} bytes")));
        }
        let mut used = BTreeSet::new();
        collect_placeholders(&self.body, &mut used)?;
        if let Some(undeclared) = used.iter().find(|u| !declared.contains(u.as_str())) {
            return Err(invalid("body", format!("placeholder ${{{undeclared}}} is not a declared parameter")));
        }
        Ok(())
    }

    /// Renders the change for one target from its parameter values (see [`ParamGrid::values_for`]).
    ///
    /// # Errors
    /// `InvalidInput` for a missing or mistyped parameter, or a rendered change that is not a valid
    /// change of the template's kind.
    pub fn render(&self, values: &BTreeMap<String, Value>) -> Result<ConfigChange> {
        let mut merged: BTreeMap<&str, Value> = BTreeMap::new();
        for p in &self.params {
            let v = values.get(&p.name).or(p.default.as_ref()).ok_or_else(|| invalid("params", format!("missing parameter {}", p.name)))?;
            if !p.kind.accepts(v) {
                return Err(invalid("params", format!("parameter {} must be {:?}", p.name, p.kind)));
            }
            merged.insert(p.name.as_str(), v.clone());
        }
        if let Some(extra) = values.keys().find(|k| !merged.contains_key(k.as_str())) {
            return Err(invalid("params", format!("unknown parameter {}", truncate(extra))));
        }
        let mut body = substitute(&self.body, &merged)?;
        if let Value::Object(m) = &mut body {
            m.insert("kind".into(), Value::String(self.kind.as_str().into()));
        }
        let change: ConfigChange =
            serde_json::from_value(body).map_err(|e| invalid("body", format!("not a valid {} change: {e}", self.kind.as_str())))?;
        change.validate()?;
        Ok(change)
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Splits a string into literal text and placeholders.
enum Piece<'a> {
    Text(std::borrow::Cow<'a, str>),
    Param(&'a str),
}

fn pieces(s: &str) -> Result<Vec<Piece<'_>>> {
    let mut out = Vec::new();
    let mut rest = s;
    let mut text = String::new();
    while let Some(pos) = rest.find('$') {
        text.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(tail) = after.strip_prefix("$${") {
            text.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let end = tail.find('}').ok_or_else(|| invalid("body", "a placeholder is not closed with '}'"))?;
            let name = &tail[..end];
            if !valid_param_name(name) {
                return Err(invalid("body", format!("${{{}}} is not a valid placeholder", truncate(name))));
            }
            if !text.is_empty() {
                out.push(Piece::Text(std::mem::take(&mut text).into()));
            }
            out.push(Piece::Param(name));
            rest = &tail[end + 1..];
        } else {
            text.push('$');
            rest = &after[1..];
        }
    }
    text.push_str(rest);
    if !text.is_empty() {
        out.push(Piece::Text(text.into()));
    }
    Ok(out)
}

fn collect_placeholders(v: &Value, into: &mut BTreeSet<String>) -> Result<()> {
    match v {
        Value::String(s) => {
            for p in pieces(s)? {
                if let Piece::Param(name) = p {
                    into.insert(name.to_owned());
                }
            }
        }
        Value::Array(a) => a.iter().try_for_each(|x| collect_placeholders(x, into))?,
        Value::Object(m) => {
            for (k, x) in m {
                if k.contains("${") {
                    return Err(invalid("body", "placeholders may not stand in keys"));
                }
                collect_placeholders(x, into)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn substitute(v: &Value, values: &BTreeMap<&str, Value>) -> Result<Value> {
    Ok(match v {
        Value::String(s) => {
            let parts = pieces(s)?;
            match parts.as_slice() {
                [Piece::Param(name)] => values.get(name).cloned().unwrap_or(Value::Null),
                _ => {
                    let mut out = String::with_capacity(s.len());
                    for p in parts {
                        match p {
                            Piece::Text(t) => out.push_str(&t),
                            Piece::Param(name) => match values.get(name) {
                                Some(Value::String(x)) => out.push_str(x),
                                Some(other) => out.push_str(&other.to_string()),
                                None => {}
                            },
                        }
                    }
                    Value::String(out)
                }
            }
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| substitute(x, values)).collect::<Result<_>>()?),
        Value::Object(m) => Value::Object(m.iter().map(|(k, x)| Ok((k.clone(), substitute(x, values)?))).collect::<Result<_>>()?),
        other => other.clone(),
    })
}

/// Parameter values per target: a default row, and rows by service id or name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ParamGrid {
    /// Values for every target.
    #[serde(default)]
    pub default: BTreeMap<String, Value>,
    /// Values for one target, by its id or its name (the id wins when both are given).
    #[serde(default)]
    pub rows: BTreeMap<String, BTreeMap<String, Value>>,
}

impl ParamGrid {
    /// The values for a target: the default row overridden by the target's row.
    pub fn values_for(&self, id: &str, name: &str) -> BTreeMap<String, Value> {
        let mut out = self.default.clone();
        if let Some(row) = self.rows.get(id).or_else(|| self.rows.get(name)) {
            out.extend(row.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        out
    }

    /// Checks the grid's size.
    ///
    /// # Errors
    /// `InvalidInput`.
    pub fn validate(&self) -> Result<()> {
        if self.rows.len() > 100_000 || self.default.len() > MAX_PARAMS || self.rows.values().any(|r| r.len() > MAX_PARAMS) {
            return Err(invalid("grid", "at most 100000 rows of at most 50 values"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use ecp_core::edge::EdgeKind;
    use serde_json::json;

    use super::*;

    fn rule() -> ConfigTemplate {
        ConfigTemplate::new(
            ChangeKind::EkuiperRule,
            json!({ "id": "rule_${line}", "sql": "SELECT * FROM ${stream} WHERE temp > ${limit}", "actions": [{ "log": {} }],
                    "options": { "qos": "${qos}", "note": "costs $$5, literal $${x}" } }),
            vec![
                ParamSpec::required("line", ParamType::String),
                ParamSpec::with_default("stream", ParamType::String, json!("demo")),
                ParamSpec::required("limit", ParamType::Number),
                ParamSpec::with_default("qos", ParamType::Integer, json!(1)),
            ],
        )
    }

    #[test]
    fn renders_typed_and_embedded_values() {
        let t = rule();
        t.validate().unwrap();
        let values: BTreeMap<String, Value> = [("line".into(), json!("a7")), ("limit".into(), json!(30.5))].into();
        let change = t.render(&values).unwrap();
        let ConfigChange::EkuiperRule { id, sql, options, .. } = change else { panic!() };
        assert_eq!(id, "rule_a7");
        assert_eq!(sql, "SELECT * FROM demo WHERE temp > 30.5");
        assert_eq!(options.unwrap(), json!({ "qos": 1, "note": "costs $$5, literal ${x}" }));
    }

    #[test]
    fn errors_name_the_parameter() {
        let t = rule();
        let missing = t.render(&BTreeMap::new()).unwrap_err().to_string();
        assert!(missing.contains("missing parameter line"), "{missing}");
        let wrong: BTreeMap<String, Value> = [("line".into(), json!("a")), ("limit".into(), json!("hot"))].into();
        assert!(t.render(&wrong).unwrap_err().to_string().contains("parameter limit"));
        let extra: BTreeMap<String, Value> = [("line".into(), json!("a")), ("limit".into(), json!(1)), ("zz".into(), json!(1))].into();
        assert!(t.render(&extra).unwrap_err().to_string().contains("unknown parameter zz"));
    }

    #[test]
    fn every_kind_renders_and_serializes_under_its_stable_name() {
        let t = ConfigTemplate::new(
            ChangeKind::NanoMqConfig,
            json!({ "data": { "mqtt": { "max_packet_size": "${size}" } } }),
            vec![ParamSpec::required("size", ParamType::Integer)],
        );
        let change = t.render(&[("size".into(), json!(1024))].into()).unwrap();
        assert_eq!(change.kind(), ChangeKind::NanoMqConfig);
        assert_eq!(serde_json::to_value(&change).unwrap()["kind"], "nanomq_config");
        for kind in [
            ChangeKind::NeuronSouthDevice,
            ChangeKind::EkuiperStream,
            ChangeKind::EkuiperRule,
            ChangeKind::NanoMqConfig,
            ChangeKind::RawApiCall,
        ] {
            assert_eq!(serde_json::to_value(kind).unwrap(), json!(kind.as_str()));
            assert_eq!(serde_json::from_value::<ChangeKind>(json!(kind.as_str())).unwrap(), kind);
        }
    }

    #[test]
    fn templates_are_checked() {
        let undeclared = ConfigTemplate::new(ChangeKind::EkuiperStream, json!({ "name": "${x}", "sql": "s" }), vec![]);
        assert!(undeclared.validate().is_err());
        let unclosed = ConfigTemplate::new(
            ChangeKind::EkuiperStream,
            json!({ "name": "${x", "sql": "s" }),
            vec![ParamSpec::required("x", ParamType::String)],
        );
        assert!(unclosed.validate().is_err());
        let many = ConfigTemplate::new(
            ChangeKind::NanoMqConfig,
            json!({ "data": {} }),
            (0..51).map(|i| ParamSpec::required(format!("p{i}"), ParamType::Json)).collect(),
        );
        assert!(many.validate().is_err());
        let bad_default = ConfigTemplate::new(
            ChangeKind::NanoMqConfig,
            json!({ "data": {} }),
            vec![ParamSpec::with_default("p", ParamType::Integer, json!("x"))],
        );
        assert!(bad_default.validate().is_err());
        let key = ConfigTemplate::new(
            ChangeKind::NanoMqConfig,
            json!({ "data": { "${k}": 1 } }),
            vec![ParamSpec::required("k", ParamType::String)],
        );
        assert!(key.validate().is_err());
    }

    #[test]
    fn rendered_changes_are_validated() {
        let raw = ConfigTemplate::new(
            ChangeKind::RawApiCall,
            json!({ "method": "POST", "path": "${p}" }),
            vec![ParamSpec::required("p", ParamType::String)],
        );
        for bad in ["http://evil/x", "//evil", "/a/../../etc", "relative", "/a b"] {
            let v: BTreeMap<String, Value> = [("p".into(), json!(bad))].into();
            assert!(raw.render(&v).is_err(), "{bad}");
        }
        let ok: BTreeMap<String, Value> = [("p".into(), json!("/api/v2/node"))].into();
        assert!(raw.render(&ok).is_ok());
        let device = ConfigTemplate::new(
            ChangeKind::NeuronSouthDevice,
            json!({ "node": "modbus-${n}", "plugin": "Modbus TCP", "params": { "host": "${host}", "port": 502 },
                    "groups": [{ "name": "g1", "interval": "${ms}", "tags": [{ "name": "t1", "address": "1!400001", "attribute": 3, "type": 4 }] }] }),
            vec![
                ParamSpec::required("n", ParamType::Integer),
                ParamSpec::required("host", ParamType::String),
                ParamSpec::with_default("ms", ParamType::Integer, json!(1000)),
            ],
        );
        device.validate().unwrap();
        let v: BTreeMap<String, Value> = [("n".into(), json!(3)), ("host".into(), json!("10.0.0.9"))].into();
        let c = device.render(&v).unwrap();
        assert!(c.fits(EdgeKind::NeuronEx) && !c.fits(EdgeKind::NanoMq));
        let ConfigChange::NeuronSouthDevice { node, groups, .. } = c else { panic!() };
        assert_eq!((node.as_str(), groups[0].interval, groups[0].tags[0].kind), ("modbus-3", 1000, 4));
        let v: BTreeMap<String, Value> = [("n".into(), json!(3)), ("host".into(), json!("h")), ("ms".into(), json!(5))].into();
        assert!(device.render(&v).is_err(), "interval below 100 ms");
    }

    #[test]
    fn the_grid_merges_rows() {
        let mut g = ParamGrid::default();
        g.default.insert("a".into(), json!(1));
        g.default.insert("b".into(), json!(2));
        g.rows.insert("svc-1".into(), [("b".into(), json!(20))].into());
        g.rows.insert("edge two".into(), [("a".into(), json!(10))].into());
        assert_eq!(g.values_for("svc-1", "x")["b"], json!(20));
        assert_eq!(g.values_for("svc-2", "edge two")["a"], json!(10));
        assert_eq!(g.values_for("svc-3", "three")["a"], json!(1));
    }
}
