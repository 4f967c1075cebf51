//! What goes out: messages published at once while connected and in order, or kept in a bounded
//! offline buffer (oldest dropped and counted) and flushed after the next connect.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use ecp_agent_proto::Channel;
use ecp_agent_proto::mqtt::qos;
use ecp_agent_proto::proto::{self, Envelope, Message};
use rumqttc::v5::AsyncClient;

use crate::agent::*;

/// A message waiting to be published.
#[derive(Debug, Clone)]
pub(crate) struct Buffered {
    pub(crate) channel: Channel,
    pub(crate) topic: String,
    pub(crate) payload: Bytes,
}

/// The bounded offline buffer: oldest dropped first, drops counted.
#[derive(Debug)]
pub(crate) struct OfflineBuffer<T> {
    pub(crate) items: VecDeque<T>,
    pub(crate) capacity: usize,
    pub(crate) dropped: u64,
}

impl<T> OfflineBuffer<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        OfflineBuffer { items: VecDeque::with_capacity(capacity.min(1024)), capacity: capacity.max(1), dropped: 0 }
    }

    pub(crate) fn push(&mut self, item: T) {
        while self.items.len() >= self.capacity {
            self.items.pop_front();
            self.dropped += 1;
        }
        self.items.push_back(item);
    }

    /// Puts back an item taken for sending (it keeps its place; the newest is dropped if full).
    pub(crate) fn push_front(&mut self, item: T) {
        if self.items.len() >= self.capacity {
            self.items.pop_back();
            self.dropped += 1;
        }
        self.items.push_front(item);
    }

    pub(crate) fn pop_front(&mut self) -> Option<T> {
        self.items.pop_front()
    }

    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }
}

/// What goes out, and whether it may go out directly: `open` once the hello and the buffer are
/// out on the current connection (`generation`).
pub(crate) struct Outbox {
    pub(crate) buffer: OfflineBuffer<Buffered>,
    pub(crate) open: bool,
    pub(crate) generation: u64,
}

impl Core {
    pub(crate) fn topic_of(&self, channel: Channel) -> &str {
        match channel {
            Channel::Hello => &self.topics.hello,
            Channel::Status => &self.topics.status,
            Channel::Heartbeat => &self.topics.heartbeat,
            Channel::Report => &self.topics.report,
            _ => &self.topics.event,
        }
    }

    /// Publishes at once when connected and nothing is waiting, else buffers (in order).
    pub(crate) fn emit(self: &Arc<Self>, channel: Channel, message: Message) {
        let envelope = Envelope::new(message);
        let payload = match proto::encode(&envelope, self.config.mqtt.max_payload()) {
            Ok(p) => Bytes::from(p),
            Err(e) => {
                tracing::warn!(error = %e, "edge agent: a message was not sent");
                return;
            }
        };
        let item = Buffered { channel, topic: self.topic_of(channel).to_owned(), payload };
        let mut outbox = lock(&self.outbox);
        if outbox.open
            && let Some(client) = self.client.get()
        {
            match client.try_publish(item.topic.clone(), qos(channel), false, item.payload.clone()) {
                Ok(()) => {
                    if channel == Channel::Heartbeat {
                        self.heartbeats_sent.fetch_add(1, Ordering::Relaxed);
                    }
                    return;
                }
                Err(_) => {
                    // rumqttc's queue is full: keep the order by buffering, and drain from a task.
                    outbox.open = false;
                    let generation = outbox.generation;
                    outbox.buffer.push(item);
                    drop(outbox);
                    tokio::spawn(flush(self.clone(), client.clone(), generation));
                    return;
                }
            }
        }
        outbox.buffer.push(item);
    }

    pub(crate) fn link_down(&self) -> bool {
        let mut outbox = lock(&self.outbox);
        outbox.open = false;
        outbox.generation += 1;
        self.link_up.swap(false, Ordering::Relaxed)
    }
}

/// Sends the buffer in order on connection `generation`, then opens the outbox.
pub(crate) async fn flush(core: Arc<Core>, client: AsyncClient, generation: u64) {
    loop {
        let item = {
            let mut outbox = lock(&core.outbox);
            if outbox.generation != generation || outbox.open {
                return;
            }
            match outbox.buffer.pop_front() {
                Some(item) => item,
                None => {
                    outbox.open = true;
                    return;
                }
            }
        };
        let publish = client.publish(item.topic.clone(), qos(item.channel), false, item.payload.clone());
        match tokio::time::timeout(core.config.request_timeout, publish).await {
            Ok(Ok(())) => {
                if item.channel == Channel::Heartbeat {
                    core.heartbeats_sent.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ => {
                let mut outbox = lock(&core.outbox);
                if outbox.generation == generation {
                    outbox.buffer.push_front(item);
                }
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offline_buffer_drops_the_oldest_and_counts() {
        let mut b = OfflineBuffer::new(3);
        for i in 0..5 {
            b.push(i);
        }
        assert_eq!((b.len(), b.dropped), (3, 2));
        assert_eq!(b.pop_front(), Some(2));
        b.push_front(2);
        b.push(5);
        assert_eq!((b.len(), b.dropped), (3, 3));
        assert_eq!(std::iter::from_fn(|| b.pop_front()).collect::<Vec<_>>(), vec![3, 4, 5]);
        // A put-back item keeps its place; the newest gives way when full.
        let mut b = OfflineBuffer::new(2);
        b.push(1);
        b.push(2);
        b.push_front(0);
        assert_eq!((b.pop_front(), b.pop_front(), b.dropped), (Some(0), Some(1), 1));
    }
}
