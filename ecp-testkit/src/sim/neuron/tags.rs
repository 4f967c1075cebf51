//! Handlers of groups and tags, and of reading and writing tag values (`/group`, `/tags`, `/read`, `/write`).

use axum::response::Response;
use http::{Method, StatusCode};
use serde_json::{Map, Value, json};

use crate::sim::reply::SimRequest;
use crate::sim::token::lock;

use super::body::{body, check_name, opt_f64, opt_str, opt_u64, query, req_str, req_u64};
use super::{
    Ctx, DEFAULT_GROUP_INTERVAL, MAX_ADDRESS_LEN, MAX_DESCRIPTION_LEN, MAX_NAME_LEN, MIN_GROUP_INTERVAL, Reply, error, ok, reply, status_of,
};
use super::{NeuronGroup, NeuronTag, NodeRunState, NodeType};

pub(super) fn group(ctx: &Ctx<'_>, req: &SimRequest) -> Reply {
    if req.method == Method::GET {
        let state = lock(ctx.state);
        if let Some(name) = req.query("node").filter(|n| !n.is_empty()) {
            let node = state.nodes.get(name).ok_or_else(|| error(2003))?;
            let groups: Vec<Value> =
                node.groups.iter().map(|(g, grp)| json!({ "name": g, "interval": grp.interval, "tag_count": grp.tags.len() })).collect();
            return Ok(reply(StatusCode::OK, &json!({ "groups": groups })));
        }
        let groups: Vec<Value> = state
            .nodes
            .values()
            .flat_map(|n| {
                n.groups
                    .iter()
                    .map(move |(g, grp)| json!({ "driver": n.name, "group": g, "interval": grp.interval, "tag_count": grp.tags.len() }))
            })
            .collect();
        return Ok(reply(StatusCode::OK, &json!({ "groups": groups })));
    }
    let m = body(req)?;
    let node_name = req_str(&m, "node")?;
    let group_name = req_str(&m, "group")?;
    let (interval, new_name) = match req.method {
        Method::POST => (Some(req_u64(&m, "interval")?), None),
        Method::PUT => (opt_u64(&m, "interval")?, opt_str(&m, "new_name")?),
        _ => (None, None),
    };
    let mut state = lock(ctx.state);
    let node = state.nodes.get_mut(&node_name).ok_or_else(|| error(2003))?;
    if node.node_type == NodeType::App {
        return Err(error(2103));
    }
    if interval.is_some_and(|i| i < MIN_GROUP_INTERVAL) {
        return Err(error(2105));
    }
    match req.method {
        Method::POST => {
            if group_name.is_empty() {
                return Err(error(2105));
            }
            check_name(&group_name, 2107)?;
            if node.groups.contains_key(&group_name) {
                return Err(error(2104));
            }
            node.groups.insert(group_name, NeuronGroup { interval: interval.unwrap_or(DEFAULT_GROUP_INTERVAL), tags: Vec::new() });
            Ok(ok())
        }
        Method::PUT => {
            if !node.groups.contains_key(&group_name) {
                return Err(error(2106));
            }
            if let Some(new_name) = new_name.filter(|n| *n != group_name) {
                check_name(&new_name, 2107)?;
                if node.groups.contains_key(&new_name) {
                    return Err(error(2104));
                }
                let g = node.groups.remove(&group_name).unwrap_or_default();
                node.groups.insert(new_name.clone(), g);
                if let Some(i) = interval {
                    node.groups.entry(new_name).or_default().interval = i;
                }
            } else if let (Some(i), Some(g)) = (interval, node.groups.get_mut(&group_name)) {
                g.interval = i;
            }
            Ok(ok())
        }
        _ => match node.groups.remove(&group_name) {
            Some(_) => Ok(ok()),
            None => Err(error(2106)),
        },
    }
}

fn tag_json(t: &NeuronTag) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), t.name.clone().into());
    m.insert("type".into(), t.data_type.into());
    m.insert("address".into(), t.address.clone().into());
    m.insert("attribute".into(), t.attribute.into());
    m.insert("description".into(), t.description.clone().into());
    m.insert("precision".into(), t.precision.into());
    m.insert("decimal".into(), json!(t.decimal));
    m.insert("bias".into(), json!(t.bias));
    m.insert("unit".into(), t.unit.clone().into());
    if t.attribute & 8 != 0
        && let Some(v) = &t.value
    {
        m.insert("value".into(), v.clone());
    }
    Value::Object(m)
}

/// Decodes one tag of a POST/PUT body: missing or mistyped required fields fail the whole body
/// (1002); range and format problems are per tag (the index reports where the batch stopped).
fn decode_tag(v: &Value) -> Result<NeuronTag, Response> {
    let Value::Object(m) = v else { return Err(error(1002)) };
    let attribute = req_u64(m, "attribute")?;
    let data_type = req_u64(m, "type")?;
    Ok(NeuronTag {
        name: req_str(m, "name")?,
        address: req_str(m, "address")?,
        attribute: u8::try_from(attribute).unwrap_or(u8::MAX),
        data_type: u8::try_from(data_type).unwrap_or(u8::MAX),
        precision: opt_u64(m, "precision")?.unwrap_or(0),
        decimal: opt_f64(m, "decimal")?.unwrap_or(0.0),
        bias: opt_f64(m, "bias")?.unwrap_or(0.0),
        description: opt_str(m, "description")?.unwrap_or_default(),
        unit: opt_str(m, "unit")?.unwrap_or_default(),
        value: m.get("value").cloned(),
    })
}

/// Per-tag validation; returns the Neuron error code.
fn validate_tag(t: &NeuronTag, plugin: &str) -> Result<(), i64> {
    if t.name.is_empty() || t.name.chars().count() > MAX_NAME_LEN {
        return Err(2206);
    }
    if t.address.chars().count() > MAX_ADDRESS_LEN {
        return Err(2207);
    }
    if t.description.chars().count() > MAX_DESCRIPTION_LEN {
        return Err(2208);
    }
    if t.attribute == 0 || t.attribute > 15 {
        return Err(2203);
    }
    if t.attribute & 8 != 0 && t.value.is_none() {
        return Err(2203);
    }
    if !(1..=40).contains(&t.data_type) || t.data_type == 15 {
        return Err(2204);
    }
    if t.precision > 17 {
        return Err(2209);
    }
    if t.attribute & 8 == 0 && !address_ok(plugin, &t.address) {
        return Err(2205);
    }
    Ok(())
}

/// Modbus addresses are `<slave>!<register>` with optional suffixes (`1!400001`, `1!400001.2`,
/// `1!400001#B`); other drivers take any non-empty address.
pub(super) fn address_ok(plugin: &str, address: &str) -> bool {
    if !plugin.starts_with("Modbus") {
        return !address.is_empty();
    }
    let Some((slave, rest)) = address.split_once('!') else { return false };
    let digits = rest.chars().take_while(char::is_ascii_digit).count();
    !slave.is_empty() && slave.chars().all(|c| c.is_ascii_digit()) && digits > 0
}

pub(super) fn tags(ctx: &Ctx<'_>, req: &SimRequest) -> Reply {
    if req.method == Method::GET {
        let node_name = query(req, "node")?;
        let group_name = query(req, "group")?;
        let state = lock(ctx.state);
        let node = state.nodes.get(node_name).ok_or_else(|| error(2003))?;
        let group = node.groups.get(group_name).ok_or_else(|| error(2106))?;
        let name = req.query("name").unwrap_or("");
        let list: Vec<Value> = group.tags.iter().filter(|t| t.name.contains(name)).map(tag_json).collect();
        return Ok(reply(StatusCode::OK, &json!({ "tags": list })));
    }
    let m = body(req)?;
    let node_name = req_str(&m, "node")?;
    let group_name = req_str(&m, "group")?;
    let Some(Value::Array(items)) = m.get("tags") else { return Err(error(1002)) };

    if req.method == Method::DELETE {
        let names: Vec<String> =
            items.iter().map(|v| v.as_str().map(str::to_owned).ok_or_else(|| error(1002))).collect::<Result<_, _>>()?;
        let mut state = lock(ctx.state);
        let node = state.nodes.get_mut(&node_name).ok_or_else(|| error(2003))?;
        let group = node.groups.get_mut(&group_name).ok_or_else(|| error(2106))?;
        group.tags.retain(|t| !names.contains(&t.name));
        return Ok(ok());
    }

    let decoded: Vec<NeuronTag> = items.iter().map(decode_tag).collect::<Result<_, _>>()?;
    let mut state = lock(ctx.state);
    let node = state.nodes.get_mut(&node_name).ok_or_else(|| error(2003))?;
    if node.node_type == NodeType::App {
        return Err(error(2103));
    }
    let plugin = node.plugin.clone();
    let group = if req.method == Method::POST {
        // Neuron creates the group when tags arrive for one that does not exist (reference §8).
        node.groups.entry(group_name).or_insert_with(|| NeuronGroup { interval: DEFAULT_GROUP_INTERVAL, tags: Vec::new() })
    } else {
        node.groups.get_mut(&group_name).ok_or_else(|| error(2106))?
    };
    let mut index = 0usize;
    let mut code = 0i64;
    for tag in decoded {
        if let Err(c) = validate_tag(&tag, &plugin) {
            code = c;
            break;
        }
        let existing = group.tags.iter().position(|t| t.name == tag.name);
        match (req.method == Method::POST, existing) {
            (true, Some(_)) => {
                code = 2202;
                break;
            }
            (true, None) => group.tags.push(tag),
            (false, Some(i)) => group.tags[i] = tag,
            (false, None) => {
                code = 2201;
                break;
            }
        }
        index += 1;
    }
    Ok(reply(status_of(code), &json!({ "index": index, "error": code })))
}

fn default_value(data_type: u8) -> Value {
    match data_type {
        9 | 10 => json!(0.0),
        11 | 12 => json!(false),
        13 => json!(""),
        14 => json!([]),
        _ => json!(0),
    }
}

pub(super) fn read(ctx: &Ctx<'_>, req: &SimRequest) -> Reply {
    let m = body(req)?;
    let node_name = req_str(&m, "node")?;
    let group_name = req_str(&m, "group")?;
    let name = opt_str(&m, "name")?.unwrap_or_default();
    let state = lock(ctx.state);
    let node = state.nodes.get(&node_name).ok_or_else(|| error(2003))?;
    let group = node.groups.get(&group_name).ok_or_else(|| error(2106))?;
    let down = match (node.state, node.connected) {
        (NodeRunState::Running, true) => None,
        (NodeRunState::Running, false) => Some(3002),
        _ => Some(3010),
    };
    let list: Vec<Value> = group
        .tags
        .iter()
        .filter(|t| t.name.contains(&name))
        .map(|t| match down {
            // A static tag answers even while the device is down.
            Some(code) if t.attribute & 8 == 0 => json!({ "name": t.name, "error": code }),
            _ => json!({ "name": t.name, "value": t.value.clone().unwrap_or_else(|| default_value(t.data_type)) }),
        })
        .collect();
    Ok(reply(StatusCode::OK, &json!({ "tags": list })))
}

pub(super) fn write(ctx: &Ctx<'_>, req: &SimRequest) -> Reply {
    let m = body(req)?;
    let node_name = req_str(&m, "node")?;
    let group_name = req_str(&m, "group")?;
    let tag_name = req_str(&m, "tag")?;
    let value = m.get("value").cloned().ok_or_else(|| error(1002))?;
    let mut state = lock(ctx.state);
    let node = state.nodes.get_mut(&node_name).ok_or_else(|| error(2003))?;
    let running = node.state == NodeRunState::Running && node.connected;
    let group = node.groups.get_mut(&group_name).ok_or_else(|| error(2106))?;
    let tag = group.tags.iter_mut().find(|t| t.name == tag_name).ok_or_else(|| error(2201))?;
    if tag.attribute & 2 == 0 {
        return Err(error(3004));
    }
    if !running {
        // Not every 3xxx is HTTP 200: a write to a device that is down is 400 (reference §8).
        return Err(reply(StatusCode::BAD_REQUEST, &json!({ "error": 3002 })));
    }
    tag.value = Some(value);
    Ok(ok())
}
