//! Authorization against its peers (issue 7): `RbacAuthorizer::check` against casbin (RBAC with
//! domains) and cedar-policy on the same model and the same seeded bindings, with a plain hash map
//! of bindings as the floor, all in the same run.
//!
//! Data sets (through the SQLite store, built-in and custom roles mixed, two bindings per user):
//! S = 10 orgs × 10 projects, 1k users; M = 100 × 10, 10k users; L = 100 × 100, 100k users.
//! `ECP_AUTHZ_SIZES=S,M` runs a subset.
//!
//! Per size: every engine is loaded from the same bindings (load time and retained heap, counted by
//! the `cap` allocator wrapping the system allocator); all engines must give the same decision on
//! 10,000 uniform random queries (asserted); then criterion times one check of a precomputed 50/50
//! allowed/denied mix per engine. Each peer gets its request in its own form, built outside the
//! timed loop (casbin's five strings, cedar's `Request`), so only the decision is timed.

use std::collections::{HashMap, HashSet};
use std::hint::black_box;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cap::Cap;
use casbin::prelude::{CoreApi, DefaultModel, Enforcer, MgmtApi, NullAdapter};
use cedar_policy::{
    Authorizer as CedarAuthorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicySet, Request,
    RestrictedExpression, Schema, ValidationMode, Validator,
};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ecp_benches::DataSet;
use ecp_core::access::{Action, Authorizer, Permission, PermissionSet, Principal, ResourceKind, Scope, Subject};
use ecp_core::identity::{BuiltinRole, RoleRef};
use ecp_core::{OrgId, ProjectId, RoleId, SystemClock};
use ecp_rbac::RbacAuthorizer;
use ecp_rbac::roles::builtin_permissions;
use foldhash::fast::RandomState;

/// Counts the bytes the Rust code of this binary holds on the heap (SQLite's own C allocations are
/// not counted: they do not go through the Rust allocator).
#[global_allocator]
static HEAP: Cap<std::alloc::System> = Cap::new(std::alloc::System, usize::MAX);

type Query = (Principal, Permission, Scope);

fn role_sets(ds: &DataSet) -> HashMap<RoleId, PermissionSet> {
    ds.roles.iter().map(|r| (r.id, PermissionSet::from_permissions(r.permissions.iter().copied()))).collect()
}

fn perms_of(role: RoleRef, custom: &HashMap<RoleId, PermissionSet>) -> PermissionSet {
    match role {
        RoleRef::Builtin(r) => builtin_permissions(r),
        RoleRef::Custom(id) => custom[&id],
    }
}

// ---------------------------------------------------------------------------------------------
// The floor: one hash lookup per scope level, no lock.

#[derive(Hash, PartialEq, Eq, Clone, Copy)]
enum Key {
    System,
    Org(OrgId),
    Project(ProjectId),
}

struct Floor(HashMap<(Subject, Key), PermissionSet, RandomState>);

impl Floor {
    fn build(ds: &DataSet) -> Floor {
        let custom = role_sets(ds);
        let mut map = HashMap::with_capacity_and_hasher(ds.bindings.len(), RandomState::default());
        for b in &ds.bindings {
            let key = match b.scope {
                Scope::System => Key::System,
                Scope::Org { org } => Key::Org(org),
                Scope::Project { project, .. } => Key::Project(project),
            };
            let e: &mut PermissionSet = map.entry((b.subject, key)).or_default();
            *e = e.union(perms_of(b.role, &custom));
        }
        Floor(map)
    }

    fn check(&self, p: &Principal, perm: Permission, scope: &Scope) -> bool {
        let s = p.subject();
        let get = |k| self.0.get(&(s, k)).is_some_and(|set: &PermissionSet| set.contains(perm));
        get(Key::System)
            || match scope {
                Scope::System => false,
                Scope::Org { org } => get(Key::Org(*org)),
                Scope::Project { org, project } => get(Key::Org(*org)) || get(Key::Project(*project)),
            }
    }
}

// ---------------------------------------------------------------------------------------------
// casbin: RBAC with domains. Roles are global templates (`p, role, kind, action`, one line per
// permission a role holds, implied actions spelled out); a binding is `g, subject, role, domain`
// with the domain `system`, `org:<id>` or `project:<id>`. A request names the scope's own domain
// and its organization's, so a role bound in the organization or the system covers its projects.

const CASBIN_MODEL: &str = r#"
[request_definition]
r = sub, dom, org, obj, act

[policy_definition]
p = sub, obj, act

[role_definition]
g = _, _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = r.obj == p.obj && r.act == p.act && (g(r.sub, p.sub, r.dom) || g(r.sub, p.sub, r.org) || g(r.sub, p.sub, "system"))
"#;

fn subject_name(s: Subject) -> String {
    format!("{}:{}", s.kind(), s.id_string().expect("a user or an API key"))
}

fn domain(scope: &Scope) -> String {
    match scope {
        Scope::System => "system".into(),
        Scope::Org { org } => format!("org:{org}"),
        Scope::Project { project, .. } => format!("project:{project}"),
    }
}

fn casbin_role(role: RoleRef, ds: &DataSet) -> String {
    match role {
        RoleRef::Builtin(r) => format!("role:{}", r.as_str()),
        RoleRef::Custom(id) => format!("role:custom:{}", ds.roles.iter().find(|r| r.id == id).expect("a seeded role").name),
    }
}

/// Every role with what it grants: the built-in ones and the data set's custom ones.
fn all_roles(ds: &DataSet) -> Vec<(RoleRef, PermissionSet)> {
    let custom = role_sets(ds);
    BuiltinRole::ALL
        .into_iter()
        .map(RoleRef::Builtin)
        .chain(ds.roles.iter().map(|r| RoleRef::Custom(r.id)))
        .map(|r| (r, perms_of(r, &custom)))
        .collect()
}

fn every_permission() -> impl Iterator<Item = Permission> {
    ResourceKind::ALL.into_iter().flat_map(|k| Action::ALL.map(|a| Permission::new(k, a)))
}

async fn build_casbin(ds: &DataSet) -> Enforcer {
    let model = DefaultModel::from_str(CASBIN_MODEL).await.expect("casbin model");
    let mut e = Enforcer::new(model, NullAdapter).await.expect("casbin enforcer");
    // The policies live in the enforcer only (a database adapter would hold them on disk).
    e.enable_auto_save(false);
    let mut p = Vec::new();
    for (role, set) in all_roles(ds) {
        for perm in every_permission().filter(|perm| set.contains(*perm)) {
            p.push(vec![casbin_role(role, ds), perm.kind.as_str().to_owned(), perm.action.as_str().to_owned()]);
        }
    }
    e.add_policies(p).await.expect("casbin policies");
    let g = ds.bindings.iter().map(|b| vec![subject_name(b.subject), casbin_role(b.role, ds), domain(&b.scope)]).collect();
    e.add_grouping_policies(g).await.expect("casbin bindings");
    e
}

type CasbinRequest = [String; 5];

fn casbin_request((p, perm, scope): &Query) -> CasbinRequest {
    let org = scope.org().map_or_else(|| "system".to_owned(), |o| format!("org:{o}"));
    [subject_name(p.subject()), domain(scope), org, perm.kind.as_str().to_owned(), perm.action.as_str().to_owned()]
}

fn casbin_check(e: &Enforcer, r: &CasbinRequest) -> bool {
    e.enforce((r[0].as_str(), r[1].as_str(), r[2].as_str(), r[3].as_str(), r[4].as_str())).expect("casbin enforce")
}

// ---------------------------------------------------------------------------------------------
// cedar-policy: scopes are entities of one type in a hierarchy (project in organization in
// system); a user carries its bindings as an attribute, `roles`, a record from role to the set of
// scopes it holds it at; each role (built-in or custom) is an action group holding the actions it
// grants (`view:cluster`, `edit:cluster`, ...) and one policy:
//   permit(principal, action in Action::"role:viewer", resource)
//   when { principal.roles has viewer && resource in principal.roles.viewer };
// The policy set is one policy per role, whatever the number of bindings (cedar evaluates every
// policy of the set on each request, so one policy per binding would make a check O(bindings)).

fn cedar_attr(role: RoleRef, ds: &DataSet) -> String {
    match role {
        RoleRef::Builtin(r) => r.as_str().to_owned(),
        RoleRef::Custom(id) => format!("custom_{}", ds.roles.iter().find(|r| r.id == id).expect("a seeded role").name),
    }
}

fn cedar_action_name(perm: Permission) -> String {
    format!("{}:{}", perm.action.as_str(), perm.kind.as_str())
}

fn cedar_schema_and_policies(ds: &DataSet) -> (String, String) {
    let roles = all_roles(ds);
    let attrs: Vec<String> = roles.iter().map(|(r, _)| format!("{}?: Set<Scope>", cedar_attr(*r, ds))).collect();
    let mut schema = format!("entity Scope in [Scope];\nentity User = {{ roles: {{ {} }} }};\n", attrs.join(", "));
    for (r, _) in &roles {
        schema.push_str(&format!("action \"role:{}\";\n", cedar_attr(*r, ds)));
    }
    for perm in every_permission() {
        let groups: Vec<String> =
            roles.iter().filter(|(_, set)| set.contains(perm)).map(|(r, _)| format!("\"role:{}\"", cedar_attr(*r, ds))).collect();
        let parents = if groups.is_empty() { String::new() } else { format!(" in [{}]", groups.join(", ")) };
        schema
            .push_str(&format!("action \"{}\"{parents} appliesTo {{ principal: [User], resource: [Scope] }};\n", cedar_action_name(perm)));
    }
    let mut policies = String::new();
    for (r, _) in &roles {
        let a = cedar_attr(*r, ds);
        policies.push_str(&format!(
            "permit(principal, action in Action::\"role:{a}\", resource) when {{ principal.roles has {a} && resource in principal.roles.{a} }};\n"
        ));
    }
    (schema, policies)
}

fn uid(ty: &str, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(EntityTypeName::from_str(ty).expect("type name"), EntityId::new(id))
}

fn scope_uid(scope: &Scope) -> EntityUid {
    uid("Scope", &domain(scope))
}

struct Cedar {
    policies: PolicySet,
    entities: Entities,
    authorizer: CedarAuthorizer,
}

fn build_cedar(ds: &DataSet) -> Cedar {
    let (schema_src, policy_src) = cedar_schema_and_policies(ds);
    let (schema, warnings) = Schema::from_cedarschema_str(&schema_src).expect("cedar schema");
    assert_eq!(warnings.count(), 0, "the cedar schema warns");
    let policies = PolicySet::from_str(&policy_src).expect("cedar policies");
    let report = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
    assert!(report.validation_passed(), "cedar policies do not validate: {report}");

    let system = scope_uid(&Scope::System);
    let mut entities = vec![Entity::new_no_attrs(system.clone(), HashSet::new())];
    let mut orgs = HashSet::new();
    for p in &ds.projects {
        let org = Scope::Org { org: p.org().expect("a project scope") };
        if orgs.insert(org) {
            entities.push(Entity::new_no_attrs(scope_uid(&org), HashSet::from([system.clone()])));
        }
        entities.push(Entity::new_no_attrs(scope_uid(p), HashSet::from([scope_uid(&org)])));
    }
    let mut held: HashMap<Subject, HashMap<String, Vec<RestrictedExpression>>> = HashMap::new();
    for b in &ds.bindings {
        held.entry(b.subject)
            .or_default()
            .entry(cedar_attr(b.role, ds))
            .or_default()
            .push(RestrictedExpression::new_entity_uid(scope_uid(&b.scope)));
    }
    for (subject, roles) in held {
        let roles = RestrictedExpression::new_record(roles.into_iter().map(|(r, scopes)| (r, RestrictedExpression::new_set(scopes))))
            .expect("a record");
        let attrs = HashMap::from([("roles".to_owned(), roles)]);
        let id = subject.id_string().expect("a user");
        entities.push(Entity::new(uid("User", &id), attrs, HashSet::new()).expect("a user entity"));
    }
    let entities = Entities::from_entities(entities, Some(&schema)).expect("cedar entities");
    Cedar { policies, entities, authorizer: CedarAuthorizer::new() }
}

fn cedar_request((p, perm, scope): &Query) -> Request {
    let principal = uid("User", &p.subject().id_string().expect("a user"));
    let action = uid("Action", &cedar_action_name(*perm));
    Request::new(principal, action, scope_uid(scope), Context::empty(), None).expect("a cedar request")
}

fn cedar_check(c: &Cedar, r: &Request) -> bool {
    c.authorizer.is_authorized(r, &c.policies, &c.entities).decision() == Decision::Allow
}

// ---------------------------------------------------------------------------------------------

/// Builds an engine `runs` times; returns the last one, the median build time and the heap the
/// last one holds (bytes allocated across its build and still held after it).
fn measure_load<T>(runs: usize, mut build: impl FnMut() -> T) -> (T, Duration, usize) {
    let mut times = Vec::with_capacity(runs);
    let mut last = None;
    let mut held = 0;
    for _ in 0..runs {
        drop(last.take());
        let before = HEAP.allocated();
        let t = Instant::now();
        let engine = build();
        times.push(t.elapsed());
        held = HEAP.allocated().saturating_sub(before);
        last = Some(engine);
    }
    times.sort();
    (last.expect("at least one run"), times[times.len() / 2], held)
}

fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// A mix of `n` queries, half allowed and half denied (by the floor), in a shuffled order.
fn balanced_mix(ds: &DataSet, floor: &Floor, n: usize) -> Vec<Query> {
    let candidates = ecp_benches::query_mix(ds, 8 * n, &[Action::View, Action::Edit], 0x5_eed0_fa11);
    let (mut allowed, mut denied): (Vec<Query>, Vec<Query>) = candidates.into_iter().partition(|(p, perm, s)| floor.check(p, *perm, s));
    assert!(allowed.len() >= n / 2 && denied.len() >= n / 2, "the candidate mix is too lopsided");
    allowed.truncate(n / 2);
    denied.truncate(n - n / 2);
    let mut mix: Vec<Query> = allowed.into_iter().chain(denied).collect();
    // Fisher-Yates with xorshift: a fixed, well-mixed order.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for i in (1..mix.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        mix.swap(i, x as usize % (i + 1));
    }
    mix
}

/// Times `check` over the mix two ways (monomorphized, so each engine's check is inlined alike):
/// back to back, where checks are independent and the CPU overlaps the cache misses of one with
/// the next; and chained, where the next query depends on this decision (skipped when allowed:
/// the same sequence for every engine, since they agree), so each check's misses are waited for.
fn timed<M: criterion::measurement::Measurement>(
    group: &mut criterion::BenchmarkGroup<'_, M>,
    engine: &str,
    size: &str,
    mix: &[Query],
    check: impl Fn(&Query) -> bool,
) {
    group.bench_with_input(BenchmarkId::new(engine, size), mix, |b, qs| {
        let mut i = 0;
        b.iter(|| {
            let q = &qs[i % qs.len()];
            i += 1;
            black_box(check(black_box(q)))
        })
    });
    group.bench_with_input(BenchmarkId::new(format!("{engine}_chained"), size), mix, |b, qs| {
        let mut i = 0;
        b.iter(|| {
            let allowed = check(black_box(&qs[i % qs.len()]));
            i += 1 + usize::from(allowed);
            allowed
        })
    });
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let wanted = std::env::var("ECP_AUTHZ_SIZES").unwrap_or_else(|_| "S,M,L".into());
    let load_runs: usize = std::env::var("ECP_AUTHZ_LOAD_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    for (name, orgs, per_org, users) in [("S", 10, 10, 1_000), ("M", 100, 10, 10_000), ("L", 100, 100, 100_000)] {
        if !wanted.split(',').any(|w| w.trim() == name) {
            continue;
        }
        let t = Instant::now();
        let ds = rt.block_on(ecp_benches::seed_with_custom_roles(orgs, per_org, users));
        let custom = ds.bindings.iter().filter(|b| matches!(b.role, RoleRef::Custom(_))).count();
        eprintln!(
            "{name}: seeded {} projects, {} users, {} bindings ({custom} to custom roles) through the store in {:.1} s",
            ds.projects.len(),
            ds.users.len(),
            ds.bindings.len(),
            t.elapsed().as_secs_f64()
        );

        let (ours, ours_load, ours_mem) =
            measure_load(load_runs, || rt.block_on(RbacAuthorizer::load(ds.store.clone(), Arc::new(SystemClock))).expect("load"));
        let (floor, floor_load, floor_mem) = measure_load(load_runs, || Floor::build(&ds));
        let (casbin, casbin_load, casbin_mem) = measure_load(load_runs, || rt.block_on(build_casbin(&ds)));
        let (cedar, cedar_load, cedar_mem) = measure_load(load_runs, || build_cedar(&ds));
        for (engine, load, mem) in [
            ("rbac_authorizer (from the store)", ours_load, ours_mem),
            ("hashmap_floor", floor_load, floor_mem),
            ("casbin", casbin_load, casbin_mem),
            ("cedar", cedar_load, cedar_mem),
        ] {
            eprintln!("{name}: load {engine}: median of {load_runs} {:.1} ms, heap held {}", load.as_secs_f64() * 1e3, mib(mem));
        }

        // Every engine must decide every query alike before its speed means anything.
        let t = Instant::now();
        let random = ecp_benches::query_mix(&ds, 10_000, &Action::ALL, 0xdec_1de5);
        let mut allowed = 0;
        for q in &random {
            let (p, perm, scope) = q;
            let truth = floor.check(p, *perm, scope);
            assert_eq!(ours.check(p, *perm, scope).is_ok(), truth, "rbac_authorizer disagrees on {p} {perm} {scope}");
            assert_eq!(casbin_check(&casbin, &casbin_request(q)), truth, "casbin disagrees on {p} {perm} {scope}");
            assert_eq!(cedar_check(&cedar, &cedar_request(q)), truth, "cedar disagrees on {p} {perm} {scope}");
            allowed += usize::from(truth);
        }
        eprintln!(
            "{name}: all four engines agree on {} random queries ({allowed} allowed), checked in {:.1} s",
            random.len(),
            t.elapsed().as_secs_f64()
        );

        let mix = balanced_mix(&ds, &floor, 10_000);
        for q in &mix {
            let truth = floor.check(&q.0, q.1, &q.2);
            assert_eq!(ours.check(&q.0, q.1, &q.2).is_ok(), truth);
            assert_eq!(casbin_check(&casbin, &casbin_request(q)), truth);
            assert_eq!(cedar_check(&cedar, &cedar_request(q)), truth);
        }
        let casbin_mix: Vec<CasbinRequest> = mix.iter().map(casbin_request).collect();
        let cedar_mix: Vec<Request> = mix.iter().map(cedar_request).collect();
        eprintln!("{name}: timed mix of {} queries, {} allowed", mix.len(), mix.iter().filter(|q| floor.check(&q.0, q.1, &q.2)).count());

        let mut group = c.benchmark_group("authz_peers");
        group.sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
        let locked_floor = parking_lot::RwLock::new(());
        timed(&mut group, "rbac_authorizer", name, &mix, |(p, perm, scope)| ours.check(p, *perm, scope).is_ok());
        timed(&mut group, "hashmap_floor", name, &mix, |(p, perm, scope)| floor.check(p, *perm, scope));
        timed(&mut group, "hashmap_floor_behind_rwlock", name, &mix, |(p, perm, scope)| {
            let _g = locked_floor.read();
            floor.check(p, *perm, scope)
        });
        group.bench_with_input(BenchmarkId::new("casbin", name), &casbin_mix, |b, qs| {
            let mut i = 0;
            b.iter(|| {
                let r = &qs[i % qs.len()];
                i += 1;
                black_box(casbin_check(&casbin, black_box(r)))
            })
        });
        group.bench_with_input(BenchmarkId::new("cedar", name), &cedar_mix, |b, qs| {
            let mut i = 0;
            b.iter(|| {
                let r = &qs[i % qs.len()];
                i += 1;
                black_box(cedar_check(&cedar, black_box(r)))
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
