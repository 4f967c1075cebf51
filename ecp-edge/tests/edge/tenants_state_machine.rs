//! Tenant isolation as a state machine: a random sequence of 10,000 fleet operations by the
//! principals of two tenants (Acme and Globex; an admin, a viewer and an operator holding only
//! `operate edge service` in each), checked one by one against a model of what each tenant holds.
//!
//! Every actor works through its own project's handle; a cross-tenant attempt uses an id of the
//! other tenant (a service, a template) or asks for a handle on the other tenant's project. The
//! model says what each call must answer: success (with the tenant's own data only), `NotFound`
//! for anything of the other tenant (and nothing changes), `PermissionDenied` for a role below the
//! call, `Conflict` or `Unsupported` where the store or the driver refuses. At the end the audit
//! log after the setup must be exactly the records the model predicts, in order: one per mutation
//! and per probe (reads write none), each refusal a failure record naming its actor, in the
//! actor's project, and carrying nothing of the other tenant; and the store must hold what the
//! model holds.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use ecp_core::access::{self, Permission, Principal, ResourceKind};
use ecp_core::audit::{AuditQuery, AuditRecord, AuditScope, Outcome};
use ecp_core::edge::{EdgeKind, EdgeSelector};
use ecp_core::identity::BuiltinRole;
use ecp_core::prelude::*;
use ecp_core::{EdgeServiceId, PageRequest, ProjectId, TemplateId};
use ecp_edge::fleet::{EdgeServiceChanges, NewEdgeService, ProjectFleet};
use ecp_edge::template::{ChangeKind, ConfigTemplate};
use ecp_rbac::{Grant, NewUser};
use proptest::prelude::{Just, any};
use proptest::sample::Index;
use proptest::strategy::Strategy;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};
use serde_json::json;

use crate::fleet::{World, world};

/// Operations in the sequence.
const OPS: usize = 10_000;
/// Service names: few, so that names clash; two differ from others only by case.
const NAMES: [&str; 8] = ["edge-0", "edge-1", "edge-2", "edge-3", "edge-4", "edge-5", "EDGE-1", "Edge-2"];
/// Tag names.
const TAGS: [&str; 4] = ["hall", "line", "spare", "dock"];
/// Template names; one differs from another only by case.
const TEMPLATE_NAMES: [&str; 4] = ["tpl-a", "tpl-b", "TPL-A", "tpl-c"];

/// A role in a tenant's project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Project admin: edits everything of the project.
    Admin,
    /// Built-in viewer: views the fleet.
    Viewer,
    /// A custom role holding only `operate edge service` (which implies `view edge service`).
    Operator,
}

impl Role {
    fn index(self) -> usize {
        self as usize
    }

    /// Whether the role holds `p` in its project (the permission matrix of `ecp-rbac`; `operate`
    /// implies `view`).
    fn may(self, p: Permission) -> bool {
        match self {
            Role::Admin => true,
            Role::Viewer => p.action == access::Action::View,
            Role::Operator => p.kind == ResourceKind::EdgeService && p.action <= access::Action::Operate,
        }
    }
}

/// A lifecycle call on a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lifecycle {
    Start,
    Stop,
    Restart,
    Upgrade,
}

/// What an actor does. `Index`es pick an id known to the target tenant (or one nobody has).
#[derive(Debug, Clone)]
enum Call {
    /// Ask for a handle on the target tenant's project.
    Handle,
    Register {
        name: usize,
        tag: Option<usize>,
    },
    Get(Index),
    Rename(Index, usize),
    Delete(Index),
    Select,
    Count {
        tag: Option<usize>,
    },
    Tags,
    CreateTag(usize),
    DeleteTag(usize),
    Lifecycle(Lifecycle, Index),
    Probe(Index),
    SaveTemplate {
        base: Option<Index>,
        name: usize,
    },
    ReadTemplate(Index),
}

/// One step: who (tenant and role), whose ids (the target tenant), what.
#[derive(Debug, Clone)]
struct Op {
    tenant: usize,
    role: Role,
    target: usize,
    action: Call,
}

/// The generated sequence; its `Debug` is short (the failure message says which step failed).
#[derive(Clone)]
struct Script(Vec<Op>);

impl std::fmt::Debug for Script {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Script({} operations)", self.0.len())
    }
}

fn call() -> impl Strategy<Value = Call> {
    let name = 0..NAMES.len();
    let tag = 0..TAGS.len();
    let lifecycle =
        proptest::prop_oneof![Just(Lifecycle::Start), Just(Lifecycle::Stop), Just(Lifecycle::Restart), Just(Lifecycle::Upgrade)];
    proptest::prop_oneof![
        3 => Just(Call::Handle),
        14 => (name.clone(), proptest::option::of(tag.clone())).prop_map(|(name, tag)| Call::Register { name, tag }),
        10 => any::<Index>().prop_map(Call::Get),
        10 => (any::<Index>(), name).prop_map(|(i, n)| Call::Rename(i, n)),
        7 => any::<Index>().prop_map(Call::Delete),
        4 => Just(Call::Select),
        4 => proptest::option::of(tag.clone()).prop_map(|tag| Call::Count { tag }),
        3 => Just(Call::Tags),
        5 => tag.clone().prop_map(Call::CreateTag),
        5 => tag.prop_map(Call::DeleteTag),
        8 => (lifecycle, any::<Index>()).prop_map(|(l, i)| Call::Lifecycle(l, i)),
        6 => any::<Index>().prop_map(Call::Probe),
        7 => (proptest::option::of(any::<Index>()), 0..TEMPLATE_NAMES.len())
            .prop_map(|(base, name)| Call::SaveTemplate { base, name }),
        5 => any::<Index>().prop_map(Call::ReadTemplate),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let role = proptest::prop_oneof![Just(Role::Admin), Just(Role::Viewer), Just(Role::Operator)];
    // A third of the steps aim at the other tenant's ids.
    (0..2usize, role, proptest::bool::weighted(0.35), call()).prop_map(|(tenant, role, cross, action)| Op {
        tenant,
        role,
        target: if cross { 1 - tenant } else { tenant },
        action,
    })
}

/// A service as the model has it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Svc {
    name: String,
    tag: Option<String>,
}

/// A template as the model has it: its latest name and version, and every name key any of its
/// versions had (the store keeps old versions, whose names stay taken in the project).
#[derive(Debug, Clone)]
struct Tpl {
    name: String,
    version: u32,
    keys: BTreeSet<String>,
}

/// What one tenant holds.
#[derive(Debug, Default)]
struct Tenant {
    services: BTreeMap<EdgeServiceId, Svc>,
    /// Every service id the tenant ever had, deleted ones included.
    known: Vec<EdgeServiceId>,
    tags: BTreeSet<String>,
    templates: BTreeMap<TemplateId, Tpl>,
    template_ids: Vec<TemplateId>,
}

impl Tenant {
    fn name_taken(&self, name: &str, except: Option<EdgeServiceId>) -> bool {
        let key = name.to_lowercase();
        self.services.iter().any(|(id, s)| Some(*id) != except && s.name.to_lowercase() == key)
    }

    fn tag_use(&self, tag: &str) -> u64 {
        self.services.values().filter(|s| s.tag.as_deref() == Some(tag)).count() as u64
    }
}

/// How a call ended, as the model predicts it and as the test sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ok,
    NotFound,
    Denied,
    Conflict,
    Unsupported,
    Other,
}

fn kind_of<T>(r: &ecp_edge::Result<T>) -> Kind {
    match r {
        Ok(_) => Kind::Ok,
        Err(ecp_edge::Error::Core(e)) if e.is_not_found() => Kind::NotFound,
        Err(ecp_edge::Error::Core(e)) if e.is_permission_denied() => Kind::Denied,
        Err(ecp_edge::Error::Core(e)) if e.is_conflict() => Kind::Conflict,
        Err(ecp_edge::Error::Core(e)) if e.is_unsupported() => Kind::Unsupported,
        Err(_) => Kind::Other,
    }
}

/// The audit record a step must write.
#[derive(Debug)]
struct Expected {
    step: usize,
    actor: String,
    project: ProjectId,
    operation: &'static str,
    kind: Kind,
    /// `None`: not checked (an id the test cannot know, such as a refused new service's).
    resource_id: Option<Option<String>>,
    resource_name: Option<String>,
    /// The id the step sent (the record may name it, whoever's it is).
    sent: Option<String>,
    /// The step sent an id of the other tenant: the record must carry nothing of what it names.
    foreign: bool,
}

/// Counts for the report.
#[derive(Debug, Default)]
struct Stats {
    calls: BTreeMap<&'static str, usize>,
    cross_tenant: usize,
    denied: usize,
    not_found: usize,
    conflicts: usize,
    unsupported: usize,
    refused_mutations: usize,
}

/// The principals and handles of the run.
struct Actors {
    projects: [ProjectId; 2],
    principals: [[Principal; 3]; 2],
    handles: [[ProjectFleet; 3]; 2],
}

/// A user of `project` holding a custom role of its organization with only `operate edge service`.
async fn operator(w: &World, project: &ecp_core::Project, email: &str) -> Principal {
    let role =
        w.ac.users
            .create_role(&w.root, Some(project.org()), "operator", "", &[Permission::operate(ResourceKind::EdgeService)])
            .await
            .unwrap();
    let u = w.ac.users.create_user(&w.root, NewUser::new(email, email).grant(Grant::custom(role.id, project.scope()))).await.unwrap();
    Principal::user(u.id, u.email)
}

async fn actors(w: &World) -> Actors {
    let other_viewer =
        w.ac.users
            .create_user(
                &w.root,
                NewUser::new("viewer@globex.example", "viewer@globex.example").grant(Grant::builtin(BuiltinRole::Viewer, w.other.scope())),
            )
            .await
            .unwrap();
    let other_viewer = Principal::user(other_viewer.id, other_viewer.email);
    let acme_operator = operator(w, &w.project, "operator@acme.example").await;
    let globex_operator = operator(w, &w.other, "operator@globex.example").await;
    let principals = [[w.admin.clone(), w.viewer.clone(), acme_operator], [w.stranger.clone(), other_viewer, globex_operator]];
    let projects = [w.project.id(), w.other.id()];
    let mut handles = Vec::new();
    for (t, ps) in principals.iter().enumerate() {
        let mut row = Vec::new();
        for p in ps {
            row.push(w.fleet.project(p, projects[t]).await.unwrap());
            // No principal of one tenant gets a handle on the other's project.
            let e = w.fleet.project(p, projects[1 - t]).await.unwrap_err();
            assert!(e.is_not_found(), "{}: {e}", p.name());
        }
        handles.push(<[ProjectFleet; 3]>::try_from(row).unwrap());
    }
    Actors { projects, principals, handles: <[[ProjectFleet; 3]; 2]>::try_from(handles).unwrap() }
}

fn template() -> ConfigTemplate {
    ConfigTemplate::new(ChangeKind::EkuiperStream, json!({ "name": "s", "sql": "CREATE STREAM s () WITH (TYPE=\"memory\")" }), vec![])
}

/// The id `i` picks among the target tenant's ids, or one nobody has.
fn pick<T: Copy>(known: &[T], i: &Index, fresh: impl FnOnce() -> T) -> T {
    let n = i.index(known.len() + 1);
    known.get(n).copied().unwrap_or_else(fresh)
}

/// Runs one step against the fleet and the model; returns the audit record it must write.
async fn step(n: usize, op: &Op, a: &Actors, w: &World, model: &mut [Tenant; 2], stats: &mut Stats) -> Result<Option<Expected>, String> {
    let me = op.tenant;
    let h = &a.handles[me][op.role.index()];
    let own_project = a.projects[me];
    let actor = a.principals[me][op.role.index()].name().to_owned();
    let edit_service = Permission::edit(ResourceKind::EdgeService);
    let view_service = Permission::view(ResourceKind::EdgeService);
    let expect = |operation, kind, resource_id, resource_name, sent: Option<String>, foreign| {
        Some(Expected { step: n, actor: actor.clone(), project: own_project, operation, kind, resource_id, resource_name, sent, foreign })
    };
    // Checks the answer's kind against the model's.
    macro_rules! expect_kind {
        ($r:expr, $k:expr) => {{
            let got = kind_of(&$r);
            if got != $k {
                let detail = match &$r {
                    Ok(_) => "ok".to_owned(),
                    Err(e) => e.to_string(),
                };
                return Err(format!("expected {:?}, got {got:?}: {detail}", $k));
            }
        }};
    }
    macro_rules! ensure {
        ($c:expr, $($m:tt)*) => {
            if !$c {
                return Err(format!($($m)*));
            }
        };
    }
    let target = &model[op.target];
    let foreign_target = op.target != me;
    let svc_id = |i: &Index| pick(&target.known, i, EdgeServiceId::new);
    // Whether `id` is a live service of the actor's tenant, and its name.
    let own_name = |model: &[Tenant; 2], id: EdgeServiceId| model[me].services.get(&id).map(|s| s.name.clone());
    let denied_or = |perm: Permission, k: Kind| if op.role.may(perm) { k } else { Kind::Denied };

    let label: &'static str;
    let out = match &op.action {
        Call::Handle => {
            label = "handle";
            let r = w.fleet.project(&a.principals[me][op.role.index()], a.projects[op.target]).await;
            expect_kind!(r, if foreign_target { Kind::NotFound } else { Kind::Ok });
            if let Ok(f) = &r {
                ensure!(f.project().id() == own_project, "a handle on {}", f.project().id());
            }
            None
        }
        Call::Register { name, tag } => {
            label = "register";
            let name = NAMES[*name];
            let tag = tag.map(|t| TAGS[t].to_owned());
            let k = denied_or(edit_service, if model[me].name_taken(name, None) { Kind::Conflict } else { Kind::Ok });
            let mut new = NewEdgeService::direct(name, EdgeKind::NeuronEx, format!("http://10.{me}.0.{}:8085", n % 250));
            if let Some(t) = &tag {
                new = new.tags([t.clone()]);
            }
            let r = h.register(new).await;
            expect_kind!(r, k);
            let mut resource_id = match k {
                Kind::Denied => Some(None),
                _ => None,
            };
            if let Ok(s) = &r {
                ensure!(s.project() == own_project && s.name() == name, "registered {s:?}");
                ensure!(s.tags() == tag.iter().cloned().collect::<Vec<_>>().as_slice(), "tags {:?}", s.tags());
                resource_id = Some(Some(s.id().to_string()));
                let t = &mut model[me];
                t.services.insert(s.id(), Svc { name: name.to_owned(), tag: tag.clone() });
                t.known.push(s.id());
                t.tags.extend(tag);
            }
            expect("edge_service.register", k, resource_id, Some(name.to_owned()), None, false)
        }
        Call::Get(i) => {
            label = "get";
            let id = svc_id(i);
            let k = denied_or(view_service, if own_name(model, id).is_some() { Kind::Ok } else { Kind::NotFound });
            let r = h.get(id).await;
            expect_kind!(r, k);
            if let Ok(s) = &r {
                let m = &model[me].services[&id];
                ensure!(s.id() == id && s.project() == own_project, "read {s:?} through {own_project}");
                ensure!(s.name() == m.name && s.tags() == m.tag.iter().cloned().collect::<Vec<_>>().as_slice(), "read {s:?}, model {m:?}");
            }
            None
        }
        Call::Rename(i, name) => {
            label = "update";
            let id = svc_id(i);
            let name = NAMES[*name];
            let old = own_name(model, id);
            let k = denied_or(
                edit_service,
                match &old {
                    None => Kind::NotFound,
                    Some(_) if model[me].name_taken(name, Some(id)) => Kind::Conflict,
                    Some(_) => Kind::Ok,
                },
            );
            let r = h.update(id, EdgeServiceChanges::new().name(name)).await;
            expect_kind!(r, k);
            if let Ok(s) = &r {
                ensure!(s.id() == id && s.project() == own_project && s.name() == name, "renamed {s:?}");
                model[me].services.get_mut(&id).expect("own service").name = name.to_owned();
            }
            let known_name = if k == Kind::Denied { None } else { old };
            expect("edge_service.update", k, Some(Some(id.to_string())), known_name, Some(id.to_string()), foreign_target)
        }
        Call::Delete(i) => {
            label = "delete";
            let id = svc_id(i);
            let old = own_name(model, id);
            let k = denied_or(edit_service, if old.is_some() { Kind::Ok } else { Kind::NotFound });
            let r = h.delete(id).await;
            expect_kind!(r, k);
            if r.is_ok() {
                model[me].services.remove(&id);
            }
            let known_name = if k == Kind::Denied { None } else { old };
            expect("edge_service.delete", k, Some(Some(id.to_string())), known_name, Some(id.to_string()), foreign_target)
        }
        Call::Select => {
            label = "select";
            let k = denied_or(view_service, Kind::Ok);
            let r = h.select(&EdgeSelector::all(), &PageRequest::first(1000)).await;
            expect_kind!(r, k);
            if let Ok(page) = &r {
                ensure!(page.items.iter().all(|s| s.project() == own_project), "a service of another project in {page:?}");
                let got: BTreeMap<EdgeServiceId, Svc> =
                    page.items.iter().map(|s| (s.id(), Svc { name: s.name().to_owned(), tag: s.tags().first().cloned() })).collect();
                ensure!(got == model[me].services, "selected {got:?}, model {:?}", model[me].services);
            }
            None
        }
        Call::Count { tag } => {
            label = "count";
            let k = denied_or(view_service, Kind::Ok);
            let (selector, want) = match tag {
                Some(t) => (EdgeSelector::with_tags([TAGS[*t]]), model[me].tag_use(TAGS[*t])),
                None => (EdgeSelector::all(), model[me].services.len() as u64),
            };
            let r = h.count(&selector).await;
            expect_kind!(r, k);
            if let Ok(c) = r {
                ensure!(c == want, "counted {c}, model {want}");
            }
            None
        }
        Call::Tags => {
            label = "tags";
            let k = denied_or(Permission::view(ResourceKind::Tag), Kind::Ok);
            let r = h.tags().await;
            expect_kind!(r, k);
            if let Ok(tags) = &r {
                let got: Vec<(String, u64)> = tags.iter().map(|t| (t.name.clone(), t.services)).collect();
                let want: Vec<(String, u64)> = model[me].tags.iter().map(|t| (t.clone(), model[me].tag_use(t))).collect();
                ensure!(got == want, "tags {got:?}, model {want:?}");
            }
            None
        }
        Call::CreateTag(t) => {
            label = "create_tag";
            let tag = TAGS[*t];
            let k = denied_or(Permission::edit(ResourceKind::Tag), if model[me].tags.contains(tag) { Kind::Conflict } else { Kind::Ok });
            let r = h.create_tag(tag).await;
            expect_kind!(r, k);
            if r.is_ok() {
                model[me].tags.insert(tag.to_owned());
            }
            expect("tag.create", k, Some(None), Some(tag.to_owned()), None, false)
        }
        Call::DeleteTag(t) => {
            label = "delete_tag";
            let tag = TAGS[*t];
            let k = denied_or(
                Permission::edit(ResourceKind::Tag),
                if model[me].tag_use(tag) > 0 {
                    Kind::Conflict
                } else if model[me].tags.contains(tag) {
                    Kind::Ok
                } else {
                    Kind::NotFound
                },
            );
            let r = h.delete_tag(tag).await;
            expect_kind!(r, k);
            if r.is_ok() {
                model[me].tags.remove(tag);
            }
            expect("tag.delete", k, Some(None), Some(tag.to_owned()), None, false)
        }
        Call::Lifecycle(l, i) => {
            let id = svc_id(i);
            let old = own_name(model, id);
            let (perm, operation) = match l {
                Lifecycle::Start => (Permission::operate(ResourceKind::EdgeService), "edge_service.start"),
                Lifecycle::Stop => (Permission::operate(ResourceKind::EdgeService), "edge_service.stop"),
                Lifecycle::Restart => (Permission::operate(ResourceKind::EdgeService), "edge_service.restart"),
                Lifecycle::Upgrade => (edit_service, "edge_service.upgrade"),
            };
            label = operation;
            // Directly managed services have no lifecycle: the driver answers `Unsupported`.
            let k = denied_or(perm, if old.is_some() { Kind::Unsupported } else { Kind::NotFound });
            let r = match l {
                Lifecycle::Start => h.start(id).await,
                Lifecycle::Stop => h.stop(id).await,
                Lifecycle::Restart => h.restart(id).await,
                Lifecycle::Upgrade => h.upgrade(id, "emqx/neuronex:3.6.3").await,
            };
            expect_kind!(r, k);
            let known_name = if k == Kind::Denied { None } else { old };
            expect(operation, k, Some(Some(id.to_string())), known_name, Some(id.to_string()), foreign_target)
        }
        Call::Probe(i) => {
            label = "probe";
            let id = svc_id(i);
            let old = own_name(model, id);
            let k = denied_or(view_service, if old.is_some() { Kind::Ok } else { Kind::NotFound });
            let r = h.probe(id).await;
            expect_kind!(r, k);
            if let Ok(s) = &r {
                ensure!(s.id() == id && s.project() == own_project, "probed {s:?}");
                ensure!(Some(s.name()) == old.as_deref(), "probed {s:?}, model {old:?}");
            }
            let known_name = if k == Kind::Denied { None } else { old };
            expect("edge_service.probe", k, Some(Some(id.to_string())), known_name, Some(id.to_string()), foreign_target)
        }
        Call::SaveTemplate { base, name } => {
            label = "save_template";
            let name = TEMPLATE_NAMES[*name];
            let key = name.to_lowercase();
            let base = base.as_ref().map(|i| pick(&target.template_ids, i, TemplateId::new));
            let own = |id: &TemplateId| model[me].templates.contains_key(id);
            let clash = |except: Option<TemplateId>| model[me].templates.iter().any(|(id, t)| Some(*id) != except && t.keys.contains(&key));
            let k = denied_or(
                Permission::edit(ResourceKind::ConfigDelivery),
                match base {
                    Some(id) if !own(&id) => Kind::NotFound,
                    b if clash(b) => Kind::Conflict,
                    _ => Kind::Ok,
                },
            );
            let r = h.save_template(base, name, &template()).await;
            expect_kind!(r, k);
            let mut resource_id = match (k, base) {
                (Kind::Denied | Kind::NotFound, _) => Some(None),
                (Kind::Conflict, Some(id)) => Some(Some(id.to_string())),
                _ => None,
            };
            if let Ok(rec) = &r {
                ensure!(rec.project == own_project && rec.name == name, "saved {rec:?}");
                let t = &mut model[me];
                match base {
                    Some(id) => {
                        let m = t.templates.get_mut(&id).expect("own template");
                        ensure!(rec.id == id && rec.version == m.version + 1, "saved {rec:?}, model {m:?}");
                        m.version += 1;
                        m.name = name.to_owned();
                        m.keys.insert(key.clone());
                    }
                    None => {
                        ensure!(rec.version == 1, "saved {rec:?}");
                        t.templates.insert(rec.id, Tpl { name: name.to_owned(), version: 1, keys: [key.clone()].into() });
                        t.template_ids.push(rec.id);
                    }
                }
                resource_id = Some(Some(rec.id.to_string()));
            }
            let foreign = base.is_some_and(|id| model[1 - me].templates.contains_key(&id));
            expect("config_template.save", k, resource_id, Some(name.to_owned()), base.map(|id| id.to_string()), foreign)
        }
        Call::ReadTemplate(i) => {
            label = "template";
            let id = pick(&target.template_ids, i, TemplateId::new);
            let k = denied_or(
                Permission::view(ResourceKind::ConfigDelivery),
                if model[me].templates.contains_key(&id) { Kind::Ok } else { Kind::NotFound },
            );
            let r = h.template(id, None).await;
            expect_kind!(r, k);
            if let Ok((rec, _)) = &r {
                let m = &model[me].templates[&id];
                ensure!(rec.id == id && rec.project == own_project, "read {rec:?} through {own_project}");
                ensure!(rec.version == m.version && rec.name == m.name, "read {rec:?}, model {m:?}");
            }
            None
        }
    };
    *stats.calls.entry(label).or_default() += 1;
    if foreign_target && !matches!(op.action, Call::Register { .. } | Call::Select | Call::Count { .. } | Call::Tags) {
        stats.cross_tenant += 1;
    }
    if let Some(e) = &out {
        match e.kind {
            Kind::Denied => stats.denied += 1,
            Kind::NotFound => stats.not_found += 1,
            Kind::Conflict => stats.conflicts += 1,
            Kind::Unsupported => stats.unsupported += 1,
            _ => {}
        }
        if e.kind != Kind::Ok {
            stats.refused_mutations += 1;
        }
    }
    Ok(out)
}

/// Compares one audit record with the model's.
fn check_record(r: &AuditRecord, e: &Expected, theirs: &BTreeSet<String>) -> Result<(), String> {
    let ev = &r.event;
    let mut bad = Vec::new();
    if ev.actor.name != e.actor {
        bad.push(format!("actor {} (want {})", ev.actor.name, e.actor));
    }
    if ev.project.as_ref().map(|p| p.id) != Some(e.project) {
        bad.push(format!("project {:?} (want {})", ev.project, e.project));
    }
    if ev.operation.as_str() != e.operation {
        bad.push(format!("operation {} (want {})", ev.operation.as_str(), e.operation));
    }
    match (&ev.outcome, e.kind) {
        (Outcome::Success, Kind::Ok) => {}
        (Outcome::Failure { reason }, k) if k != Kind::Ok => {
            let says = match k {
                Kind::Denied => "permission denied",
                Kind::NotFound => "not found",
                Kind::Unsupported => "not supported",
                _ => "",
            };
            if !reason.contains(says) {
                bad.push(format!("reason {reason:?} (want {says:?})"));
            }
        }
        (o, k) => bad.push(format!("outcome {o:?} (want {k:?})")),
    }
    if let Some(id) = &e.resource_id
        && ev.resource_id != *id
    {
        bad.push(format!("resource id {:?} (want {id:?})", ev.resource_id));
    }
    if ev.resource_name != e.resource_name {
        bad.push(format!("resource name {:?} (want {:?})", ev.resource_name, e.resource_name));
    }
    if e.foreign && !ev.details.is_null() {
        // A refusal of another tenant's id says nothing of what the id names.
        bad.push(format!("details {} of another tenant's resource", ev.details));
    }
    // No record names anything of the other tenant but an id the caller sent.
    let text = serde_json::to_string(ev).unwrap_or_default();
    if let Some(leak) = theirs.iter().find(|x| e.sent.as_ref() != Some(*x) && text.contains(x.as_str())) {
        bad.push(format!("the other tenant's {leak:?} in {text}"));
    }
    if bad.is_empty() { Ok(()) } else { Err(bad.join("; ")) }
}

/// Every audit record after `seq`, in order.
async fn records_after(w: &World, mut seq: u64) -> Vec<AuditRecord> {
    let mut out = Vec::new();
    loop {
        let got = w.store.audit_records_after(seq, 1000).await.unwrap();
        let Some(last) = got.last() else { return out };
        seq = last.record.seq;
        out.extend(got.into_iter().map(|s| s.record));
    }
}

/// Every failure record of `query` after `seq` (the query pages newest first).
async fn failures_after(w: &World, mut query: AuditQuery, seq: u64) -> Vec<AuditRecord> {
    query.success = Some(false);
    let scope = AuditScope { all: true, ..Default::default() };
    let mut out = Vec::new();
    let mut page = PageRequest::first(1000);
    loop {
        let got = w.store.query_audit(&query, &scope, &page).await.unwrap();
        out.extend(got.items.into_iter().filter(|r| r.seq > seq));
        match got.next {
            Some(c) => page = PageRequest::after(1000, c),
            None => return out,
        }
    }
}

/// Runs a script on a fresh world and checks the model after each step and the audit log and the
/// store at the end.
async fn run(script: &Script) -> Result<Stats, String> {
    let w = world().await;
    let a = actors(&w).await;
    let scope = AuditScope { all: true, ..Default::default() };
    let baseline = w.store.query_audit(&AuditQuery::default(), &scope, &PageRequest::first(1)).await.unwrap().items[0].seq;
    let mut model: [Tenant; 2] = Default::default();
    let mut stats = Stats::default();
    let mut expected = Vec::new();
    for (n, op) in script.0.iter().enumerate() {
        match step(n, op, &a, &w, &mut model, &mut stats).await {
            Ok(Some(e)) => expected.push(e),
            Ok(None) => {}
            Err(why) => {
                let from = n.saturating_sub(8);
                let before: Vec<String> = script.0[from..n].iter().enumerate().map(|(k, o)| format!("  #{}: {o:?}", from + k)).collect();
                return Err(format!("step #{n} {op:?}: {why}\nthe steps before:\n{}", before.join("\n")));
            }
        }
    }

    println!("{} operations: {stats:#?}", script.0.len());

    // The audit log after the setup is exactly the predicted records, in order.
    let records = records_after(&w, baseline).await;
    // What names each tenant: its project and organization, its principals, its resources' ids.
    let names: [BTreeSet<String>; 2] = [0, 1].map(|t| {
        let m: &Tenant = &model[t];
        let project = if t == 0 { &w.project } else { &w.other };
        let mut s: BTreeSet<String> = m.known.iter().map(ToString::to_string).collect();
        s.extend(m.template_ids.iter().map(ToString::to_string));
        s.extend([project.id().to_string(), project.org().to_string()]);
        for p in &a.principals[t] {
            s.insert(p.name().to_owned());
            s.extend(p.subject().id_string());
        }
        s
    });
    // A record that matches no step, followed by the step's own, is counted as an extra (and the
    // run fails at the end, after the other checks); any other difference fails at once.
    let mut extras: Vec<(usize, &AuditRecord)> = Vec::new();
    let mut j = 0;
    for e in &expected {
        let tenant = a.projects.iter().position(|p| *p == e.project).unwrap_or(0);
        let check = |r: &AuditRecord| check_record(r, e, &names[1 - tenant]);
        let Some(r) = records.get(j) else {
            return Err(format!(
                "{} audit records for {} audited steps: step #{} {:?} has none",
                records.len(),
                expected.len(),
                e.step,
                script.0[e.step]
            ));
        };
        match check(r) {
            Ok(()) => j += 1,
            Err(_) if records.get(j + 1).is_some_and(|next| check(next).is_ok()) => {
                extras.push((e.step, r));
                j += 2;
            }
            Err(why) => {
                let next = records.get(j + 1).map(|r| format!("{:?}", r.event)).unwrap_or_default();
                return Err(format!(
                    "audit record {} of step #{} {:?}: {why}\nthe record: {:?}\nthe next one: {next}",
                    r.seq, e.step, script.0[e.step], r.event
                ));
            }
        }
    }
    if let Some(extra) = records.get(j) {
        return Err(format!("{} audit records for {} audited steps; the first extra: {:?}", records.len(), expected.len(), extra.event));
    }

    // Each refusal is a failure record, found by the audit query, in the actor's project.
    let failures = failures_after(&w, AuditQuery::default(), baseline).await;
    if failures.len() != stats.refused_mutations {
        return Err(format!("{} failure records for {} refused calls", failures.len(), stats.refused_mutations));
    }
    for t in 0..2 {
        let theirs = failures_after(&w, AuditQuery { project: Some(a.projects[t]), ..Default::default() }, baseline).await;
        let want = expected.iter().filter(|e| e.project == a.projects[t] && e.kind != Kind::Ok).count();
        if theirs.len() != want {
            return Err(format!("{} failure records in project {t}, {want} refusals of its actors", theirs.len()));
        }
        let actors: Vec<&str> = a.principals[t].iter().map(Principal::name).collect();
        if let Some(r) = theirs.iter().find(|r| !actors.contains(&r.event.actor.name.as_str())) {
            return Err(format!("a failure record of another tenant's actor in project {t}: {:?}", r.event));
        }
    }

    // The store holds what the model holds.
    for (t, (m, p)) in model.iter().zip(a.projects).enumerate() {
        let page = w.store.select_edge_services(p, &EdgeSelector::all(), &PageRequest::first(1000)).await.unwrap();
        let got: BTreeMap<EdgeServiceId, Svc> =
            page.items.iter().map(|s| (s.id(), Svc { name: s.name().to_owned(), tag: s.tags().first().cloned() })).collect();
        if got != m.services {
            return Err(format!("project {t} holds {got:?}, the model {:?}", m.services));
        }
        let tags: BTreeSet<String> = w.store.list_tags(p).await.unwrap().into_iter().map(|t| t.name).collect();
        if tags != m.tags {
            return Err(format!("project {t} has tags {tags:?}, the model {:?}", m.tags));
        }
        let templates: BTreeMap<TemplateId, (String, u32)> =
            w.store.list_templates(p).await.unwrap().into_iter().map(|r| (r.id, (r.name, r.version))).collect();
        let want: BTreeMap<TemplateId, (String, u32)> = m.templates.iter().map(|(id, m)| (*id, (m.name.clone(), m.version))).collect();
        if templates != want {
            return Err(format!("project {t} has templates {templates:?}, the model {want:?}"));
        }
    }
    if let Some((step, first)) = extras.first() {
        let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
        for (_, r) in &extras {
            *by_kind.entry(format!("{} {:?} before the step's own record", r.event.operation.as_str(), r.event.outcome)).or_default() += 1;
        }
        return Err(format!(
            "{} audit records no step accounts for: {by_kind:#?}\nthe first, of step #{step} {:?}: {:?}",
            extras.len(),
            script.0[*step],
            first.event
        ));
    }
    Ok(stats)
}

/// A random sequence of 10,000 operations across two tenants: no cross-tenant read or write, and
/// an audit record for every refusal. `ECP_TENANTS_SEED` (hex, 64 digits) replays a run.
#[test]
fn ten_thousand_operations_across_tenants_stay_in_their_tenant() {
    let seed: [u8; 32] = match std::env::var("ECP_TENANTS_SEED") {
        Ok(hex) => {
            let bytes: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
            bytes.try_into().expect("ECP_TENANTS_SEED: 64 hex digits")
        }
        Err(_) => random_seed(),
    };
    let hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
    println!("ECP_TENANTS_SEED={hex}");
    let config = Config {
        cases: 1,
        failure_persistence: None,
        // A shrink step replays the whole sequence (a few seconds): stop shrinking after 30 s.
        max_shrink_time: 30_000,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let strategy = proptest::collection::vec(op(), OPS..=OPS).prop_map(Script);
    let started = Instant::now();
    let result = runner.run(&strategy, |script| {
        let t = Instant::now();
        rt.block_on(run(&script)).map_err(TestCaseError::fail)?;
        println!("{} operations and their checks in {:.1?}", script.0.len(), t.elapsed());
        Ok(())
    });
    match result {
        Ok(()) => println!("done in {:.1?}", started.elapsed()),
        Err(TestError::Fail(why, script)) => panic!("{why}\n({script:?}; replay with ECP_TENANTS_SEED={hex})"),
        Err(e) => panic!("{e}"),
    }
}

/// A random seed from the standard library's hasher keys (no RNG crate needed).
fn random_seed() -> [u8; 32] {
    use std::hash::{BuildHasher, Hasher};
    let state = std::collections::hash_map::RandomState::new();
    let mut seed = [0; 32];
    for (i, chunk) in seed.chunks_mut(8).enumerate() {
        let mut h = state.build_hasher();
        h.write_usize(i);
        h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    seed
}
