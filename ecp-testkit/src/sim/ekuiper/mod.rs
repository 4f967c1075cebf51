//! eKuiper 2.x's REST API (:9081), also served by NeuronEX under `/api/ekuiper`.
//!
//! Quirks kept (reference §4, eKuiper `internal/server/rest.go`): errors are
//! `{"error":code,"message":"<prefix>: <text>"}` plus a newline, sent as `text/plain` by Go's
//! `http.Error`, 404 for code 1002 and 400 otherwise (so deleting an unknown rule is a 400 and
//! describing an unknown stream too); create, start, stop, restart and drop answer plain-text
//! sentences (201 for creations); `GET /` is JSON that Go's sniffer labels `text/plain`;
//! `/rules/{id}/status` is 2-space-indented JSON; the standalone server disables keep-alive; auth
//! reads `Authorization: <token>` without `Bearer`.

mod sql;

use std::collections::BTreeMap;

use axum::response::Response;
use http::StatusCode;
use http::header::{CONNECTION, CONTENT_TYPE, HeaderValue};
use serde_json::{Map, Value, json};

use super::reply::{self, SimRequest, ekuiper_text_error, go_not_found};
use super::server::Shared;
use super::token::{self, TokenCheck, lock};

/// The version `GET /` reports.
pub(crate) const VERSION: &str = "2.4.0";

/// A stream or table.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct EkuiperStream {
    /// The stream's name.
    pub name: String,
    /// The `CREATE` statement it was made from.
    pub sql: String,
    /// Whether it is a table (`CREATE TABLE`).
    pub is_table: bool,
    pub(crate) def: sql::StreamDef,
}

/// A rule.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct EkuiperRule {
    /// The rule id.
    pub id: String,
    /// The display name, if one was given.
    pub name: Option<String>,
    /// The rule JSON as last sent; `GET /rules/{id}` returns it unchanged.
    pub json: String,
    /// The streams and tables its SQL reads.
    pub sources: Vec<String>,
    /// Its actions' sink names, in order (`log`, `mqtt`…).
    pub sinks: Vec<String>,
    /// Tags, if any.
    pub tags: Option<Vec<String>>,
    /// Status as eKuiper spells it: `running`, `stopped`, `starting`, `stopping`,
    /// `stopped: waiting for next schedule.`, `stopped by error`, `error: …`. Tests may set any.
    pub status: String,
    /// The status message (`canceled manually` after a stop).
    pub message: String,
    /// When it last started, in Unix milliseconds (0 if never).
    pub last_start_ms: i64,
    /// When it last stopped, in Unix milliseconds (0 if never).
    pub last_stop_ms: i64,
}

impl EkuiperRule {
    fn start(&mut self) {
        self.status = "running".to_owned();
        self.message = String::new();
        self.last_start_ms = reply::unix_millis();
    }

    fn stop(&mut self) {
        self.status = "stopped".to_owned();
        self.message = "canceled manually".to_owned();
        self.last_stop_ms = reply::unix_millis();
    }
}

/// Everything a simulated eKuiper holds.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct EkuiperState {
    /// Streams and tables by name (one namespace, as in eKuiper's store).
    pub streams: BTreeMap<String, EkuiperStream>,
    /// Rules by id.
    pub rules: BTreeMap<String, EkuiperRule>,
}

type Reply = Result<Response, Response>;

fn err(code: i64, message: impl AsRef<str>) -> Response {
    let status = if code == 1002 { StatusCode::NOT_FOUND } else { StatusCode::BAD_REQUEST };
    ekuiper_text_error(status, code, message.as_ref())
}

/// Plain text as Go writes it without a content type (sniffed as `text/plain`).
fn text(status: StatusCode, body: String) -> Response {
    reply::respond(status, &[(CONTENT_TYPE, "text/plain; charset=utf-8")], body)
}

/// JSON written through `jsonResponse` (with its content type).
fn json_reply(value: &Value) -> Response {
    reply::json(StatusCode::OK, "application/json", value)
}

/// Standalone eKuiper: the whole path, auth per the config, keep-alive off.
pub(crate) fn handle_standalone(shared: &Shared, req: &SimRequest) -> Response {
    let mut resp = handle(shared, req, &req.path, shared.config.auth);
    // `server.SetKeepAlivesEnabled(false)`.
    resp.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// Serves `sub` (the path relative to eKuiper's root, e.g. `/rules/r1/status`).
pub(crate) fn handle(shared: &Shared, req: &SimRequest, sub: &str, auth: bool) -> Response {
    let Some(state) = shared.ekuiper.as_ref() else { return go_not_found() };
    let segs: Vec<String> = match reply::segments(sub, "") {
        Some(s) if s.len() == 1 && s[0].is_empty() => Vec::new(),
        Some(s) => s,
        None => return go_not_found(),
    };
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let methods: &[&str] = match segs.as_slice() {
        [] => &["GET", "POST"],
        ["ping"] => &["GET"],
        ["streams" | "tables" | "rules"] => &["GET", "POST"],
        ["streams" | "tables" | "rules", name] if !name.is_empty() => &["GET", "DELETE", "PUT"],
        ["rules", id, "status" | "topo"] | ["v2", "rules", id, "status"] if !id.is_empty() => &["GET"],
        ["rules", id, "start" | "stop" | "restart"] if !id.is_empty() => &["POST"],
        _ => return go_not_found(),
    };
    if !methods.contains(&req.method.as_str()) {
        // gorilla/mux: 405 with an empty body.
        return reply::respond(StatusCode::METHOD_NOT_ALLOWED, &[], "");
    }
    let open = matches!(segs.as_slice(), [] | ["ping"]);
    if auth && !open {
        let header = req.header("authorization").unwrap_or("");
        if header.is_empty() {
            return reply::go_text_error(StatusCode::UNAUTHORIZED, "missing_token");
        }
        let why = match shared.tokens.check(header, token::AUD_EKUIPER) {
            TokenCheck::Valid => None,
            TokenCheck::Malformed => {
                Some("validate token error: token is malformed: token contains an invalid number of segments".to_owned())
            }
            TokenCheck::Unknown => Some("validate token error: token signature is invalid: crypto/rsa: verification error".to_owned()),
            TokenCheck::Expired => Some("validate token error: token has invalid claims: token is expired".to_owned()),
            TokenCheck::WrongAudience => Some("audience field should contain eKuiper, but got [neuron]".to_owned()),
        };
        if let Some(why) = why {
            return reply::go_text_error(StatusCode::UNAUTHORIZED, &why);
        }
    }
    let mut state = lock(state);
    let result = match (req.method.as_str(), segs.as_slice()) {
        (_, []) => Ok(info(shared)),
        (_, ["ping"]) => Ok(reply::respond(StatusCode::OK, &[], "")),
        ("GET", [kind @ ("streams" | "tables")]) => Ok(list_sources(&state, *kind == "tables")),
        ("POST", [kind @ ("streams" | "tables")]) => create_source(&mut state, req, *kind == "tables"),
        ("GET", [kind @ ("streams" | "tables"), name]) => describe_source(&state, name, *kind == "tables"),
        ("DELETE", [kind @ ("streams" | "tables"), name]) => drop_source(&mut state, req, name, *kind == "tables"),
        ("PUT", [kind @ ("streams" | "tables"), name]) => replace_source(&mut state, req, name, *kind == "tables"),
        ("GET", ["rules"]) => Ok(list_rules(&state)),
        ("POST", ["rules"]) => create_rule(&mut state, req),
        ("GET", ["rules", id]) => describe_rule(&state, id),
        ("DELETE", ["rules", id]) => drop_rule(&mut state, id),
        ("PUT", ["rules", id]) => upsert_rule(&mut state, req, id),
        (_, ["rules", id, "status"]) => rule_status(&state, id),
        (_, ["v2", "rules", id, "status"]) => rule_status_v2(&state, id),
        (_, ["rules", id, "topo"]) => rule_topo(&state, id),
        (_, ["rules", id, action]) => rule_action(&mut state, id, action),
        _ => Err(go_not_found()),
    };
    result.unwrap_or_else(|e| e)
}

fn info(shared: &Shared) -> Response {
    let body = json!({
        "version": shared.config.version.as_deref().unwrap_or(VERSION),
        "os": "linux",
        "arch": "amd64",
        "upTimeSeconds": shared.started.elapsed().as_secs(),
        "cpuUsage": "0.00",
        "memoryUsed": "41943040",
        "memoryTotal": "8201691136",
    });
    // `rootHandler` writes JSON without a content type: Go sniffs it as text/plain.
    text(StatusCode::OK, body.to_string())
}

fn kind_name(is_table: bool) -> (&'static str, &'static str) {
    if is_table { ("table", "Table") } else { ("stream", "Stream") }
}

fn list_sources(state: &EkuiperState, tables: bool) -> Response {
    let names: Vec<&str> = state.streams.values().filter(|s| s.is_table == tables).map(|s| s.name.as_str()).collect();
    json_reply(&json!(names))
}

/// The `sql` of a statement descriptor body.
fn statement(req: &SimRequest) -> Result<String, Response> {
    let decoded: Result<Value, _> = serde_json::from_slice(&req.body);
    match decoded {
        Ok(Value::Object(m)) => Ok(m.get("sql").and_then(Value::as_str).unwrap_or("").to_owned()),
        Ok(other) => Err(err(
            1000,
            format!(
                "Invalid body: Error decoding the statement descriptor: json: cannot unmarshal {} into Go value of type server.statementDescriptor",
                go_type(&other)
            ),
        )),
        Err(e) => Err(err(1000, format!("Invalid body: Error decoding the statement descriptor: {e}"))),
    }
}

fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Array(_) => "array",
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Bool(_) => "bool",
        _ => "object",
    }
}

fn create_source(state: &mut EkuiperState, req: &SimRequest, tables: bool) -> Reply {
    let (_, title) = kind_name(tables);
    let prefix = format!("{title} command error");
    let sql = statement(req)?;
    // Like eKuiper, the statement decides: a CREATE TABLE posted to /streams makes a table.
    let def = sql::parse_create(&sql).map_err(|e| err(1000, format!("{prefix}: {e}")))?;
    let (kind, made) = kind_name(def.is_table);
    if state.streams.contains_key(&def.name) {
        return Err(err(1000, format!("{prefix}: Create {kind} fails: Item {} already exists.", def.name)));
    }
    let name = def.name.clone();
    state.streams.insert(name.clone(), EkuiperStream { name: name.clone(), sql, is_table: def.is_table, def });
    Ok(text(StatusCode::CREATED, format!("{made} {name} is created.")))
}

fn describe_source(state: &EkuiperState, name: &str, tables: bool) -> Reply {
    let (kind, _) = kind_name(tables);
    match state.streams.get(name).filter(|s| s.is_table == tables) {
        Some(s) => Ok(json_reply(&s.def.describe_json())),
        // `DescStream` wraps the not-found error with %s, losing its code: 400 and 1000.
        None => Err(err(1000, format!("describe {kind} error: Describe {kind} fails, {kind} {name} is not found."))),
    }
}

fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

fn drop_source(state: &mut EkuiperState, req: &SimRequest, name: &str, tables: bool) -> Reply {
    let (kind, title) = kind_name(tables);
    let force = req.query("force").and_then(parse_go_bool).unwrap_or(false);
    if !force && state.rules.values().any(|r| r.sources.iter().any(|s| s == name)) {
        return Err(err(1000, format!("stream {name} has been referenced by other rules")));
    }
    if state.streams.get(name).is_none_or(|s| s.is_table != tables) {
        return Err(err(1002, format!("delete {kind} error: {kind} {name} is not found")));
    }
    state.streams.remove(name);
    Ok(text(StatusCode::OK, format!("{title} {name} is dropped.")))
}

fn replace_source(state: &mut EkuiperState, req: &SimRequest, name: &str, tables: bool) -> Reply {
    let (kind, title) = kind_name(tables);
    let prefix = format!("{title} command error");
    let sql = statement(req)?;
    let def = sql::parse_create(&sql).map_err(|e| err(1000, format!("{prefix}: {e}")))?;
    if def.is_table != tables {
        return Err(err(1002, format!("{prefix}: {kind} {} is not found", def.name)));
    }
    if def.name != name {
        return Err(err(1000, format!("{prefix}: Replace {name} fails: the sql statement must update the {name} source.")));
    }
    state.streams.insert(name.to_owned(), EkuiperStream { name: name.to_owned(), sql, is_table: tables, def });
    Ok(text(StatusCode::OK, format!("{title} {name} is replaced.")))
}

fn list_rules(state: &EkuiperState) -> Response {
    let rules: Vec<Value> = state
        .rules
        .values()
        .map(|r| {
            json!({
                "id": r.id,
                "name": r.name.clone().unwrap_or_else(|| r.id.clone()),
                "status": r.status,
                "version": "",
                "trace": false,
                "tags": r.tags,
            })
        })
        .collect();
    json_reply(&json!(rules))
}

/// Validates a rule body (`GetRuleByJson` plus the topology check); `path_id` is the id of a PUT.
fn parse_rule(state: &EkuiperState, body: &[u8], path_id: Option<&str>) -> Result<(EkuiperRule, bool), String> {
    let text = String::from_utf8_lossy(body).into_owned();
    let m: Map<String, Value> = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(m)) => m,
        Ok(other) => {
            return Err(format!(
                "invalid rule json: Parse rule {text} error : json: cannot unmarshal {} into Go value of type def.Rule.",
                go_type(&other)
            ));
        }
        Err(e) => return Err(format!("invalid rule json: Parse rule {text} error : {e}.")),
    };
    let body_id = m.get("id").and_then(Value::as_str).unwrap_or("").to_owned();
    let id = match path_id {
        Some(p) if !body_id.is_empty() && body_id != p => {
            return Err(format!("invalid rule json: Rule id {body_id} is not consistent with rule id {p} in the path."));
        }
        Some(p) => p.to_owned(),
        None => body_id,
    };
    if id.is_empty() {
        return Err("invalid rule json: Missing rule id.".to_owned());
    }
    let sql = m.get("sql").and_then(Value::as_str).unwrap_or("");
    if sql.is_empty() && m.get("graph").is_none_or(Value::is_null) {
        return Err("invalid rule json: Missing rule SQL or graph.".to_owned());
    }
    let sinks: Vec<String> = match m.get("actions") {
        Some(Value::Array(actions)) if !actions.is_empty() => actions
            .iter()
            .map(|a| {
                a.as_object().and_then(|o| o.keys().next().cloned()).ok_or_else(|| "invalid rule json: Invalid rule actions.".to_owned())
            })
            .collect::<Result<_, _>>()?,
        _ => return Err("invalid rule json: Missing rule actions.".to_owned()),
    };
    let sources = if sql.is_empty() { Vec::new() } else { sql::select_sources(sql).map_err(|e| format!("Parse SQL {sql} error: {e}"))? };
    for s in &sources {
        if !state.streams.contains_key(s) {
            return Err(format!("fail to get stream {s}, please check if stream is created"));
        }
    }
    let tags = m.get("tags").and_then(Value::as_array).map(|t| t.iter().filter_map(Value::as_str).map(str::to_owned).collect());
    let triggered = m.get("triggered").and_then(Value::as_bool).unwrap_or(true);
    let rule = EkuiperRule {
        id,
        name: m.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()).map(str::to_owned),
        json: text,
        sources,
        sinks,
        tags,
        status: "stopped".to_owned(),
        message: String::new(),
        last_start_ms: 0,
        last_stop_ms: 0,
    };
    Ok((rule, triggered))
}

fn create_rule(state: &mut EkuiperState, req: &SimRequest) -> Reply {
    let (mut rule, triggered) = parse_rule(state, &req.body, None).map_err(|e| err(1000, e))?;
    if state.rules.contains_key(&rule.id) {
        return Err(err(1000, format!("rule {} already exists", rule.id)));
    }
    if triggered {
        rule.start();
    }
    let id = rule.id.clone();
    state.rules.insert(id.clone(), rule);
    Ok(text(StatusCode::CREATED, format!("Rule {id} was created successfully.")))
}

fn describe_rule(state: &EkuiperState, id: &str) -> Reply {
    let rule = state.rules.get(id).ok_or_else(|| err(1002, format!("Describe rule error: Rule {id} is not found.")))?;
    Ok(reply::respond(StatusCode::OK, &[(CONTENT_TYPE, "application/json")], rule.json.clone()))
}

fn drop_rule(state: &mut EkuiperState, id: &str) -> Reply {
    // `RuleRegistry.delete` returns a plain error for an unknown rule: 400 with code 1000.
    state.rules.remove(id).ok_or_else(|| err(1000, format!("Delete rule error: rule {id} not found")))?;
    Ok(text(StatusCode::OK, format!("Rule {id} is dropped.")))
}

fn upsert_rule(state: &mut EkuiperState, req: &SimRequest, id: &str) -> Reply {
    let (mut rule, triggered) = parse_rule(state, &req.body, Some(id)).map_err(|e| err(1000, format!("Update rule error: {e}")))?;
    if let Some(old) = state.rules.get(id) {
        rule.last_start_ms = old.last_start_ms;
        rule.last_stop_ms = old.last_stop_ms;
    }
    if triggered {
        rule.start();
    } else if state.rules.contains_key(id) {
        rule.stop();
    }
    state.rules.insert(id.to_owned(), rule);
    Ok(text(StatusCode::OK, format!("Rule {id} was updated successfully.")))
}

fn find_rule<'s>(state: &'s EkuiperState, id: &str, prefix: &str) -> Result<&'s EkuiperRule, Response> {
    state.rules.get(id).ok_or_else(|| err(1002, format!("{prefix}: Rule {id} is not found")))
}

/// The status fields in eKuiper's order; a running rule adds per-operator metrics.
fn status_fields(rule: &EkuiperRule) -> Vec<(String, Value)> {
    let mut fields: Vec<(String, Value)> = vec![
        ("status".into(), json!(rule.status)),
        ("message".into(), json!(rule.message)),
        ("lastStartTimestamp".into(), json!(rule.last_start_ms)),
        ("lastStopTimestamp".into(), json!(rule.last_stop_ms)),
        ("nextStartTimestamp".into(), json!(0)),
    ];
    if rule.status == "running" {
        let mut metric = |prefix: &str, with_connection: bool| {
            for (name, value) in [
                ("records_in_total", json!(0)),
                ("records_out_total", json!(0)),
                ("process_latency_us", json!(0)),
                ("buffer_length", json!(0)),
                ("exceptions_total", json!(0)),
                ("last_exception", json!("")),
                ("last_exception_time", json!(0)),
            ] {
                fields.push((format!("{prefix}_{name}"), value));
            }
            if with_connection {
                fields.push((format!("{prefix}_connection_status"), json!(1)));
                fields.push((format!("{prefix}_connection_last_connected_time"), json!(rule.last_start_ms)));
            }
        };
        for s in &rule.sources {
            metric(&format!("source_{s}_0"), true);
        }
        metric("op_2_project_0", false);
        for (i, sink) in rule.sinks.iter().enumerate() {
            metric(&format!("sink_{sink}_{i}_0"), true);
        }
    }
    fields
}

fn rule_status(state: &EkuiperState, id: &str) -> Reply {
    let rule = find_rule(state, id, "get rule status error")?;
    // Go's json.Indent(…, "", "  "): one key per line, a space after the colon.
    let lines: Vec<String> = status_fields(rule).iter().map(|(k, v)| format!("  {}: {v}", Value::String(k.clone()))).collect();
    let body = format!("{{\n{}\n}}", lines.join(",\n"));
    Ok(reply::respond(StatusCode::OK, &[(CONTENT_TYPE, "application/json")], body))
}

fn rule_status_v2(state: &EkuiperState, id: &str) -> Reply {
    let rule = find_rule(state, id, "get rule status error")?;
    let map: Map<String, Value> = status_fields(rule).into_iter().collect();
    Ok(json_reply(&Value::Object(map)))
}

fn rule_topo(state: &EkuiperState, id: &str) -> Reply {
    let rule = find_rule(state, id, "get rule topo error")?;
    let sources: Vec<String> = rule.sources.iter().map(|s| format!("source_{s}")).collect();
    let sinks: Vec<String> = rule.sinks.iter().enumerate().map(|(i, s)| format!("sink_{s}_{i}")).collect();
    let mut edges = Map::new();
    for s in &sources {
        edges.insert(s.clone(), json!(["op_2_project"]));
    }
    edges.insert("op_2_project".into(), json!(sinks));
    Ok(json_reply(&json!({ "sources": sources, "edges": edges })))
}

fn rule_action(state: &mut EkuiperState, id: &str, action: &str) -> Reply {
    let prefix = format!("{action} rule error");
    let rule = state
        .rules
        .get_mut(id)
        .ok_or_else(|| err(1002, format!("{prefix}: Rule {id} is not found in registry, please check if it is created")))?;
    let sentence = match action {
        "start" => {
            if rule.status != "running" {
                rule.start();
            }
            format!("Rule {id} was started")
        }
        "stop" => {
            rule.stop();
            format!("Rule {id} was stopped.")
        }
        _ => {
            rule.start();
            format!("Rule {id} was restarted")
        }
    };
    Ok(text(StatusCode::OK, sentence))
}
