//! Health: the local services probed for each heartbeat, and the hello sent on every connect.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ecp_agent_proto::Channel;
use ecp_agent_proto::proto::{Heartbeat, Hello, LocalService, Message, ServiceHealth};

use crate::agent::*;

impl Core {
    pub(crate) async fn probe_all(&self) -> Vec<ServiceHealth> {
        let limit = self.config.request_timeout.min(self.config.heartbeat.max(Duration::from_secs(1)));
        futures::future::join_all(self.services.iter().map(|s| async move {
            let start = Instant::now();
            let up = matches!(tokio::time::timeout(limit, s.client.probe()).await, Ok(Ok(_)));
            let latency_ms = up.then(|| u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX));
            ServiceHealth { name: s.config.name.clone(), up, latency_ms }
        }))
        .await
    }

    pub(crate) async fn make_heartbeat(&self) -> Heartbeat {
        let services = self.probe_all().await;
        let stats = self.stats();
        let metrics = [
            ("buffered", stats.buffered as f64),
            ("dropped", stats.dropped as f64),
            ("connects", stats.connects as f64),
            ("commands_handled", stats.commands_handled as f64),
            ("commands_refused", stats.commands_refused as f64),
            ("rejected", stats.rejected.values().sum::<u64>() as f64),
            ("items_applied", stats.items_applied as f64),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let hb = Heartbeat {
            seq: self.seq.fetch_add(1, Ordering::Relaxed) + 1,
            uptime_secs: self.started.elapsed().as_secs(),
            services,
            metrics,
        };
        *lock(&self.latest) = Some(hb.clone());
        hb
    }

    pub(crate) async fn latest_heartbeat(&self) -> Heartbeat {
        let latest = lock(&self.latest).clone();
        match latest {
            Some(hb) => hb,
            None => self.make_heartbeat().await,
        }
    }

    pub(crate) fn hello(&self) -> Hello {
        Hello {
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            heartbeat_secs: u32::try_from(self.config.heartbeat.as_secs().max(1)).unwrap_or(u32::MAX),
            services: self
                .services
                .iter()
                .map(|s| LocalService {
                    name: s.config.name.clone(),
                    kind: s.config.kind.as_str().to_owned(),
                    url: s.config.url.clone(),
                    restartable: s.config.restart_command.is_some(),
                })
                .collect(),
            applied: lock(&self.applied_versions).clone(),
        }
    }
}

pub(crate) async fn heartbeat_loop(core: Arc<Core>) {
    let mut tick = tokio::time::interval(core.config.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let hb = core.make_heartbeat().await;
        core.emit(Channel::Heartbeat, Message::Heartbeat(hb));
    }
}
