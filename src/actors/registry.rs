//! Finds the actor of a stream, starting it on demand. Actors stop themselves when idle
//! (passivation); a message to one that just stopped is retried on a fresh one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use events::{EventMetadata, StreamName};
use uuid::Uuid;

use super::aggregate::{
    Aggregate, AggregateActor, Execute, Executed, GetState, OrderActor, OrderAggregate,
    WalletActor, WalletAggregate,
};
use super::CoreError;
use crate::domain::{OrderCommand, OrderState, Policy, WalletCommand, WalletState};
use crate::store::EventStore;

/// Dead entries are swept every this many starts, so the maps hold live actors only.
const SWEEP_EVERY: usize = 256;

pub struct Registry {
    store: Arc<dyn EventStore>,
    policy: Arc<Policy>,
    idle_after: Duration,
    orders: Mutex<Actors<Uuid, OrderAggregate>>,
    wallets: Mutex<Actors<String, WalletAggregate>>,
}

struct Actors<K, A: Aggregate> {
    live: HashMap<K, Addr<AggregateActor<A>>>,
    starts: usize,
}

impl<K: std::hash::Hash + Eq + Clone, A: Aggregate> Actors<K, A> {
    fn get_or_start(
        &mut self,
        key: &K,
        start: impl FnOnce() -> Addr<AggregateActor<A>>,
    ) -> Addr<AggregateActor<A>> {
        if let Some(addr) = self.live.get(key).filter(|a| a.connected()) {
            return addr.clone();
        }
        self.starts += 1;
        if self.starts.is_multiple_of(SWEEP_EVERY) {
            self.live.retain(|_, a| a.connected());
        }
        let addr = start();
        self.live.insert(key.clone(), addr.clone());
        addr
    }
}

impl Registry {
    pub fn new(store: Arc<dyn EventStore>, policy: Arc<Policy>, idle_after: Duration) -> Registry {
        Registry {
            store,
            policy,
            idle_after,
            orders: Mutex::new(Actors {
                live: HashMap::new(),
                starts: 0,
            }),
            wallets: Mutex::new(Actors {
                live: HashMap::new(),
                starts: 0,
            }),
        }
    }

    fn start<A: Aggregate>(&self, aggregate: A, stream: StreamName) -> Addr<AggregateActor<A>> {
        AggregateActor::new(
            aggregate,
            stream.to_string(),
            Arc::clone(&self.store),
            Arc::clone(&self.policy),
            self.idle_after,
        )
        .start()
    }

    fn order_actor(&self, id: Uuid) -> Addr<OrderActor> {
        let mut orders = self.orders.lock().expect("registry poisoned");
        orders.get_or_start(&id, || self.start(OrderAggregate, StreamName::order(id)))
    }

    fn wallet_actor(&self, raw: &str) -> Addr<WalletActor> {
        let mut wallets = self.wallets.lock().expect("registry poisoned");
        wallets.get_or_start(&raw.to_string(), || {
            let aggregate = WalletAggregate {
                address: raw.to_string(),
            };
            // Every caller passes a raw address it derived; the name is built the same way
            // `StreamName::wallet` would, without re-validating on each start.
            self.start(aggregate, StreamName::Wallet(raw.to_string()))
        })
    }

    pub async fn order(
        &self,
        id: Uuid,
        command: OrderCommand,
        metadata: EventMetadata,
    ) -> Result<Executed<OrderState>, CoreError> {
        retry_closed(|| {
            let msg = Execute::<OrderAggregate> {
                command: command.clone(),
                metadata,
            };
            self.order_actor(id).send(msg)
        })
        .await?
    }

    pub async fn order_state(&self, id: Uuid) -> Result<OrderState, CoreError> {
        retry_closed(|| self.order_actor(id).send(GetState::new())).await
    }

    pub async fn wallet(
        &self,
        raw: &str,
        command: WalletCommand,
        metadata: EventMetadata,
    ) -> Result<Executed<WalletState>, CoreError> {
        retry_closed(|| {
            let msg = Execute::<WalletAggregate> {
                command: command.clone(),
                metadata,
            };
            self.wallet_actor(raw).send(msg)
        })
        .await?
    }

    pub async fn wallet_state(&self, raw: &str) -> Result<WalletState, CoreError> {
        retry_closed(|| self.wallet_actor(raw).send(GetState::new())).await
    }
}

/// Sends again when the actor stopped before handling the message (passivation races). A
/// stopped actor's mailbox refuses the message before it is handled, so sending it again to a
/// fresh actor cannot run a command twice.
async fn retry_closed<T, F, Fut>(mut send: F) -> Result<T, CoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, MailboxError>>,
{
    for _ in 0..3 {
        match send().await {
            Ok(answer) => return Ok(answer),
            Err(MailboxError::Closed) => continue,
            Err(MailboxError::Timeout) => break,
        }
    }
    Err(CoreError::Unavailable("the actor is unavailable".into()))
}
