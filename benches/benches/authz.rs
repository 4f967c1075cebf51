//! Authorization checks: `RbacAuthorizer::check` against the floor, a plain hash map of
//! (subject, scope) -> permission set built from the same bindings, in the same run.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ecp_core::access::{Authorizer, Permission, PermissionSet, Principal, Scope, Subject};
use ecp_core::{OrgId, ProjectId, SystemClock};
use ecp_rbac::RbacAuthorizer;
use ecp_rbac::roles::builtin_permissions;
use foldhash::fast::RandomState;

#[derive(Hash, PartialEq, Eq, Clone, Copy)]
enum Key {
    System,
    Org(OrgId),
    Project(ProjectId),
}

/// The floor: one hash lookup per scope level, no locks, built-in roles only.
struct Floor(HashMap<(Subject, Key), PermissionSet, RandomState>);

impl Floor {
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

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut group = c.benchmark_group("authz_check");
    for (name, orgs, per_org, users) in [("S", 10, 10, 1_000), ("M", 100, 10, 10_000)] {
        let ds = rt.block_on(ecp_benches::seed(orgs, per_org, users));
        let authz = rt.block_on(RbacAuthorizer::load(ds.store.clone(), Arc::new(SystemClock))).unwrap();
        let mut floor = Floor(HashMap::default());
        for b in &ds.bindings {
            let key = match b.scope {
                Scope::System => Key::System,
                Scope::Org { org } => Key::Org(org),
                Scope::Project { project, .. } => Key::Project(project),
            };
            let ecp_core::identity::RoleRef::Builtin(role) = b.role else { unreachable!("seeded built-in roles only") };
            let e = floor.0.entry((b.subject, key)).or_default();
            *e = e.union(builtin_permissions(role));
        }
        let queries = ecp_benches::queries(&ds, 10_000);
        // Both engines must agree on every query before their speed means anything.
        let mut allowed = 0;
        for (p, perm, scope) in &queries {
            let a = authz.check(p, *perm, scope).is_ok();
            assert_eq!(a, floor.check(p, *perm, scope), "{p} {perm} {scope}");
            allowed += usize::from(a);
        }
        eprintln!("{name}: {} bindings, {allowed} of {} queries allowed", ds.bindings.len(), queries.len());

        group.bench_with_input(BenchmarkId::new("rbac_authorizer", name), &queries, |b, qs| {
            let mut i = 0;
            b.iter(|| {
                let (p, perm, scope) = &qs[i % qs.len()];
                i += 1;
                black_box(authz.check(black_box(p), *perm, scope).is_ok())
            })
        });
        let locked = std::sync::RwLock::new(());
        group.bench_with_input(BenchmarkId::new("hashmap_floor_behind_rwlock", name), &queries, |b, qs| {
            let mut i = 0;
            b.iter(|| {
                let (p, perm, scope) = &qs[i % qs.len()];
                i += 1;
                let _g = locked.read().unwrap();
                black_box(floor.check(black_box(p), *perm, scope))
            })
        });
        group.bench_with_input(BenchmarkId::new("hashmap_floor", name), &queries, |b, qs| {
            let mut i = 0;
            b.iter(|| {
                let (p, perm, scope) = &qs[i % qs.len()];
                i += 1;
                black_box(floor.check(black_box(p), *perm, scope))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
