//! Each project's alarm configuration kept in the store (a [`DocumentStore`] document per
//! project): its rules, their silences, its settings and the hash of its custom alarm token.
//! Alarms themselves (active ones and history) are not kept yet.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use ecp_core::identity::TokenHash;
use ecp_core::store::ProjectFilter;
use ecp_core::{PageRequest, ProjectId, Store, Timestamp};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::{AlarmEngine, AlarmSettings, RuleSlot};
use crate::alarm::rule::{AlarmRule, Builtin};
use crate::error::Result;
use crate::sample::MetricScope;

/// The documents' kind.
pub(crate) const KIND: &str = "alarm_project";

#[derive(Debug, Serialize, Deserialize)]
struct RuleDoc {
    rule: AlarmRule,
    /// Silenced (until `silenced_until`, or until lifted when that is `None`).
    #[serde(default)]
    silenced: bool,
    #[serde(default)]
    silenced_until: Option<Timestamp>,
    /// Silenced instances, each until when (`None`: until lifted).
    #[serde(default)]
    silenced_instances: BTreeMap<String, Option<Timestamp>>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ProjectDoc {
    scope: MetricScope,
    settings: AlarmSettings,
    rules: Vec<RuleDoc>,
    /// The custom alarm token's SHA-256, hex (the token itself is never kept).
    #[serde(default)]
    token_hash: Option<String>,
    /// Built-in rules the project deleted.
    #[serde(default)]
    deleted_builtins: Vec<Builtin>,
}

impl AlarmEngine {
    /// A project's configuration as kept; `None` for a project not attached.
    fn project_doc(&self, project: ProjectId) -> Option<serde_json::Value> {
        let state = self.state(project)?;
        let token_hash = self.inner.tokens.read().iter().find(|(_, s)| s.project == project).map(|(h, _)| h.to_hex());
        let st = state.lock();
        let rules = st
            .rules
            .values()
            .map(|slot| RuleDoc {
                rule: slot.rule.clone(),
                silenced: slot.silence.is_some(),
                silenced_until: slot.silence.flatten(),
                silenced_instances: slot.silenced_instances.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            })
            .collect();
        let present: std::collections::HashSet<Builtin> = st.rules.values().filter_map(|s| s.rule.builtin).collect();
        let deleted_builtins = Builtin::ALL.iter().copied().filter(|b| !present.contains(b)).collect();
        let doc = ProjectDoc { scope: st.scope, settings: st.settings, rules, token_hash, deleted_builtins };
        serde_json::to_value(doc).ok()
    }

    /// Takes a kept configuration back: the project is attached with its rules, silences,
    /// settings and token.
    fn restore(&self, doc: ProjectDoc) -> Result<()> {
        let token = doc.token_hash.as_deref().map(TokenHash::from_hex).transpose()?;
        self.attach(doc.scope);
        let state = self.state(doc.scope.project).unwrap_or_else(|| unreachable!("attached just above"));
        let mut st = state.lock();
        st.settings = doc.settings;
        // The kept rules replace the defaults; a built-in rule this version added (neither kept
        // nor deleted) stays at its default.
        let kept: std::collections::HashSet<Builtin> =
            doc.rules.iter().filter_map(|r| r.rule.builtin).chain(doc.deleted_builtins.iter().copied()).collect();
        st.rules.retain(|_, slot| slot.rule.builtin.is_some_and(|b| !kept.contains(&b)));
        for r in doc.rules {
            let silence = r.silenced.then_some(r.silenced_until);
            let silenced_instances: HashMap<String, Option<Timestamp>> = r.silenced_instances.into_iter().collect();
            st.rules.insert(r.rule.id, RuleSlot { rule: r.rule, instances: HashMap::new(), silence, silenced_instances });
        }
        drop(st);
        if let Some(hash) = token {
            let mut tokens = self.inner.tokens.write();
            tokens.retain(|_, s| s.project != doc.scope.project);
            tokens.insert(hash, doc.scope);
        }
        Ok(())
    }

    /// Notes that a project's configuration changed, for the writer of [`persist`](Self::persist).
    pub(crate) fn config_changed(&self, project: ProjectId) {
        if let Some(tx) = self.inner.persist.lock().as_ref() {
            let _ = tx.send(project);
        }
    }

    /// Attaches every project of `store` (so its rules are evaluated whether or not anyone opened
    /// it), and detaches those no longer there, forgetting their kept configuration.
    async fn attach_all(&self, store: &dyn Store) -> Result<()> {
        let mut seen = std::collections::HashSet::new();
        let mut page = PageRequest::first(1000);
        loop {
            let got = store.list_projects(&ProjectFilter::default(), &page).await?;
            for p in &got.items {
                self.attach(MetricScope::new(p.org(), p.id()));
                seen.insert(p.id());
            }
            match got.next {
                Some(cursor) => page = PageRequest::after(1000, cursor),
                None => break,
            }
        }
        let gone: Vec<ProjectId> = self.inner.projects.read().keys().filter(|p| !seen.contains(p)).copied().collect();
        for project in gone {
            self.detach(project);
            store.delete_document(KIND, &project.to_string()).await?;
        }
        Ok(())
    }

    /// Keeps each project's alarm configuration (rules, silences, settings, the custom alarm
    /// token's hash) in `store`, so a restart loses none of it. Restores what the store kept and
    /// attaches every project of the store, so their rules are evaluated from now on without anyone
    /// opening them; then writes a project's configuration each time it changes through
    /// [`ProjectAlarms`](crate::alarm::ProjectAlarms), and every `rescan` attaches projects created
    /// since (and detaches deleted ones). Runs until the returned task is aborted.
    ///
    /// Active alarms and history are not kept: after a restart, a condition that still holds
    /// fires again once its rule's count is reached. One replica should run it (several would all
    /// evaluate every project).
    ///
    /// # Errors
    /// `Backend` when the store cannot be read at start.
    pub async fn persist(&self, store: Arc<dyn Store>, rescan: Duration) -> Result<tokio::task::JoinHandle<()>> {
        for (key, doc) in store.documents(KIND).await? {
            match serde_json::from_value::<ProjectDoc>(doc)
                .map_err(|e| e.to_string())
                .and_then(|d| self.restore(d).map_err(|e| e.to_string()))
            {
                Ok(()) => {}
                Err(e) => {
                    tracing::warn!(project = %key, error = %e, "a kept alarm configuration could not be read; the project starts with the defaults")
                }
            }
        }
        self.attach_all(store.as_ref()).await?;
        let (tx, mut rx) = mpsc::unbounded_channel::<ProjectId>();
        *self.inner.persist.lock() = Some(tx);
        let weak = Arc::downgrade(&self.inner);
        Ok(tokio::spawn(async move {
            let mut tick = tokio::time::interval(rescan.max(Duration::from_millis(100)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            let mut failed: std::collections::BTreeSet<ProjectId> = std::collections::BTreeSet::new();
            loop {
                let mut changed = std::mem::take(&mut failed);
                tokio::select! {
                    got = rx.recv() => match got {
                        Some(p) => {
                            changed.insert(p);
                            while let Ok(p) = rx.try_recv() {
                                changed.insert(p);
                            }
                        }
                        None => return,
                    },
                    _ = tick.tick() => {
                        let Some(inner) = weak.upgrade() else { return };
                        if let Err(e) = (AlarmEngine { inner }).attach_all(store.as_ref()).await {
                            tracing::warn!(error = %e, "attaching the store's projects to the alarm engine failed");
                        }
                    }
                }
                let Some(inner) = weak.upgrade() else { return };
                let engine = AlarmEngine { inner };
                for project in changed {
                    let Some(doc) = engine.project_doc(project) else { continue };
                    if let Err(e) = store.put_document(KIND, &project.to_string(), &doc, engine.now()).await {
                        tracing::warn!(project = %project, error = %e, "keeping a project's alarm configuration failed; retrying");
                        failed.insert(project);
                    }
                }
            }
        }))
    }
}
