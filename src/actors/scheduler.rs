//! The expiry scheduler: expires unpaid orders when their time is up. Its timers live in
//! memory; on start the core re-arms them from the order projection, so a restart never
//! forgets an order. An order whose time runs out while its payment waits or runs stays
//! watched, as the attempt may still end unsigned and reopen it.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use events::EventMetadata;
use uuid::Uuid;

use super::{CoreError, Shared};
use crate::domain::{DomainError, OrderCommand};

/// After a failed attempt to expire an order, try again this many ticks later.
const RETRY_TICKS: i32 = 5;

pub struct ExpiryScheduler {
    sh: Arc<Shared>,
    due: BTreeSet<(DateTime<Utc>, Uuid)>,
    tick: Duration,
}

impl ExpiryScheduler {
    pub fn new(sh: Arc<Shared>, tick: Duration) -> ExpiryScheduler {
        ExpiryScheduler {
            sh,
            due: BTreeSet::new(),
            tick,
        }
    }

    fn fire(&mut self, ctx: &mut Context<Self>) {
        if !self.sh.alive() {
            return;
        }
        let now = Utc::now();
        while let Some(&(at, order_id)) = self.due.first() {
            if at > now {
                break;
            }
            self.due.pop_first();
            let sh = Arc::clone(&self.sh);
            let tick = self.tick;
            ctx.spawn(
                async move {
                    let cmd = OrderCommand::Expire { now: Utc::now() };
                    sh.registry
                        .order(order_id, cmd, EventMetadata::correlated(order_id))
                        .await
                }
                .into_actor(self)
                .map(move |result, act, _| {
                    let tick = chrono::Duration::from_std(tick).unwrap_or_default();
                    match result {
                        // Paid in time, but the attempt may still end before anything is
                        // signed (a queue timeout, say), which reopens the order after its
                        // time is up: keep watching it until it can no longer be reopened.
                        Ok((state, _)) if state.may_reopen() => {
                            let after = state
                                .request
                                .map_or(Utc::now(), |r| r.queue_deadline.max(Utc::now()));
                            act.due.insert((after + tick, order_id));
                        }
                        Ok(_) => {}
                        // The order's clock says not yet: look again a tick later.
                        Err(CoreError::Domain(DomainError::TooEarly)) => {
                            act.due.insert((Utc::now() + tick, order_id));
                        }
                        // Nothing to expire (an unknown order): forget it.
                        Err(CoreError::Domain(e)) => {
                            tracing::warn!(%order_id, error = %e, "not expiring order")
                        }
                        // The store or the actor failed: the order still has to expire, so
                        // try again shortly rather than wait for a restart.
                        Err(e) => {
                            tracing::warn!(%order_id, error = %e, "cannot expire order; retrying");
                            act.due.insert((Utc::now() + tick * RETRY_TICKS, order_id));
                        }
                    }
                }),
            );
        }
    }
}

impl Actor for ExpiryScheduler {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.tick, |act, ctx| act.fire(ctx));
    }
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Track {
    pub order_id: Uuid,
    pub expires_at: DateTime<Utc>,
}

impl Handler<Track> for ExpiryScheduler {
    type Result = ();
    fn handle(&mut self, msg: Track, ctx: &mut Self::Context) {
        self.due.insert((msg.expires_at, msg.order_id));
        self.fire(ctx);
    }
}
