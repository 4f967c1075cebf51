//! What the alarm engine keeps in the store ([`DocumentStore`](ecp_core::DocumentStore)): each
//! project's configuration (its rules, their silences, its settings and the hash of its custom
//! alarm token) as one document, and each alarm, active or in history, as a document of its own
//! (kind `alarm/{project}`, keyed by the alarm's id).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use ecp_core::identity::TokenHash;
use ecp_core::store::ProjectFilter;
use ecp_core::{PageRequest, ProjectId, Store, Timestamp};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::{Alarm, AlarmEngine, AlarmId, AlarmOrigin, AlarmSettings, AlarmState, RuleSlot};
use crate::alarm::rule::{AlarmRule, Builtin};
use crate::error::Result;
use crate::sample::MetricScope;

/// The kind of the projects' configuration documents.
pub(crate) const KIND: &str = "alarm_project";

/// The kind of a project's alarm documents.
fn alarm_kind(project: ProjectId) -> String {
    format!("alarm/{project}")
}

/// What changed, for the writer.
#[derive(Debug)]
pub(crate) enum Change {
    /// A project's configuration.
    Config(ProjectId),
    /// An alarm (raised, acknowledged, updated, closed).
    Alarm(Box<Alarm>),
    /// Alarms gone from a project's history (purged, or over the most kept).
    Forgotten(ProjectId, Vec<AlarmId>),
}

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

    fn changed(&self, change: Change) {
        if let Some(tx) = self.inner.persist.lock().as_ref() {
            let _ = tx.send(change);
        }
    }

    /// Notes that a project's configuration changed, for the writer of [`persist`](Self::persist).
    pub(crate) fn config_changed(&self, project: ProjectId) {
        self.changed(Change::Config(project));
    }

    /// Notes that an alarm changed.
    pub(crate) fn alarm_changed(&self, alarm: &Alarm) {
        if self.inner.persist.lock().is_some() {
            self.changed(Change::Alarm(Box::new(alarm.clone())));
        }
    }

    /// Notes that alarms left a project's history.
    pub(crate) fn alarms_forgotten(&self, project: ProjectId, ids: Vec<AlarmId>) {
        if !ids.is_empty() {
            self.changed(Change::Forgotten(project, ids));
        }
    }

    /// Takes a project's kept alarms back: the active ones (each rule instance that raised one
    /// keeps it, and closes it when it recovers) and the history, oldest first.
    async fn restore_alarms(&self, store: &dyn Store, project: ProjectId) -> Result<()> {
        let Some(state) = self.state(project) else { return Ok(()) };
        let mut alarms: Vec<Alarm> = Vec::new();
        for (key, doc) in store.documents(&alarm_kind(project)).await? {
            match serde_json::from_value::<Alarm>(doc) {
                Ok(a) if a.scope.project == project => alarms.push(a),
                Ok(_) => tracing::warn!(alarm = %key, "a kept alarm of another project; ignored"),
                Err(e) => tracing::warn!(alarm = %key, error = %e, "a kept alarm could not be read; ignored"),
            }
        }
        alarms.sort_by_key(|a| (a.closed_at.unwrap_or(a.fired_at), a.id));
        let max_history = self.inner.config.max_history;
        let mut st = state.lock();
        for a in alarms {
            match a.state {
                AlarmState::Active => {
                    match &a.origin {
                        AlarmOrigin::Rule { rule } => {
                            if let Some(slot) = st.rules.get_mut(rule) {
                                let trigger = slot.rule.trigger_count;
                                let inst = slot.instances.entry(a.labels.clone()).or_default();
                                inst.active = Some(a.id);
                                inst.breaches = trigger;
                            }
                        }
                        AlarmOrigin::Custom { uuid } => {
                            st.custom_active.insert(uuid.clone(), a.id);
                        }
                        AlarmOrigin::System { what } => {
                            st.custom_active.insert(format!("system:{what}"), a.id);
                        }
                    }
                    st.active.insert(a.id, a);
                }
                AlarmState::History => {
                    st.history.push_back(a);
                    if st.history.len() > max_history {
                        st.history.pop_front();
                    }
                }
            }
        }
        Ok(())
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
            let kind = alarm_kind(project);
            for (key, _) in store.documents(&kind).await? {
                store.delete_document(&kind, &key).await?;
            }
        }
        Ok(())
    }

    /// Keeps each project's alarm configuration (rules, silences, settings, the custom alarm
    /// token's hash) and its alarms (active and history) in `store`, so a restart loses none of
    /// them. Restores what the store kept and attaches every project of the store, so their rules
    /// are evaluated from now on without anyone opening them; an active alarm comes back with its
    /// rule instance, which closes it when it recovers. Then writes each change as it happens, in
    /// order, and every `rescan` attaches projects created since (and detaches deleted ones,
    /// forgetting what was kept of them). Runs until the returned task is aborted.
    ///
    /// What was not written yet when the process stopped is lost (writes follow changes within
    /// milliseconds). One replica should run the engine (several would all evaluate every project).
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
        let projects: Vec<ProjectId> = self.inner.projects.read().keys().copied().collect();
        for project in projects {
            self.restore_alarms(store.as_ref(), project).await?;
        }
        let (tx, mut rx) = mpsc::unbounded_channel::<Change>();
        *self.inner.persist.lock() = Some(tx);
        let weak = Arc::downgrade(&self.inner);
        Ok(tokio::spawn(async move {
            let mut tick = tokio::time::interval(rescan.max(Duration::from_millis(100)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            let mut failed: Vec<Change> = Vec::new();
            loop {
                let mut changes = std::mem::take(&mut failed);
                tokio::select! {
                    got = rx.recv() => match got {
                        Some(c) => {
                            changes.push(c);
                            while let Ok(c) = rx.try_recv() {
                                changes.push(c);
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
                // In order (an alarm raised, then closed, is kept closed); each configuration once.
                let mut configs = std::collections::BTreeSet::new();
                for change in changes {
                    let done = match &change {
                        Change::Config(project) => {
                            if !configs.insert(*project) {
                                continue;
                            }
                            match engine.project_doc(*project) {
                                Some(doc) => store.put_document(KIND, &project.to_string(), &doc, engine.now()).await,
                                None => continue,
                            }
                        }
                        Change::Alarm(a) => match serde_json::to_value(a.as_ref()) {
                            Ok(doc) => store.put_document(&alarm_kind(a.scope.project), &a.id.to_string(), &doc, engine.now()).await,
                            Err(e) => {
                                tracing::warn!(alarm = %a.id, error = %e, "an alarm could not be encoded; not kept");
                                continue;
                            }
                        },
                        Change::Forgotten(project, ids) => {
                            let kind = alarm_kind(*project);
                            let mut outcome = Ok(());
                            for id in ids {
                                if let Err(e) = store.delete_document(&kind, &id.to_string()).await {
                                    outcome = Err(e);
                                    break;
                                }
                            }
                            outcome
                        }
                    };
                    if let Err(e) = done {
                        tracing::warn!(error = %e, "keeping the alarm engine's state failed; retrying");
                        failed.push(change);
                    }
                }
            }
        }))
    }
}
