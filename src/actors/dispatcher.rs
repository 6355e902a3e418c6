//! The queue dispatcher: starts waiting work in FIFO order when its wallet and its Fragment
//! session are free. One in-flight transfer per wallet (its seqno is sequential); one flow
//! per Fragment session (the site keeps one current purchase per session); the owner's
//! sessions form a pool, which the operator can replace while payments run (`owners`).
//! Requests that wait past their deadline time out here.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::Utc;
use events::{EventMetadata, OrderCreated, PaymentSubmitted};
use tokio::sync::oneshot;

use super::owners::OwnerPool;
use super::payment::{self, Job};
use super::Shared;
use crate::domain::OrderCommand;
use crate::fragment::client::SessionId;
use crate::fragment::FragmentSession;

pub enum Work {
    Pay(Box<Job>),
    /// A submission recorded before a restart: needs its wallet, no Fragment session.
    Reconcile(Box<OrderCreated>, Box<PaymentSubmitted>),
}

impl Work {
    fn wallet(&self) -> String {
        match self {
            Work::Pay(job) => job.payer.wallet.raw_address(),
            Work::Reconcile(_, s) => s.wallet_address.clone(),
        }
    }
}

/// Work that got its wallet (and, for a payment, its Fragment session and its name).
enum Task {
    Pay(Box<Job>, FragmentSession, String),
    Reconcile(Box<OrderCreated>, Box<PaymentSubmitted>),
}

/// The Fragment session a task holds, by its identity (`FragmentSession::id`), never by a
/// position: the owner pool can be replaced while a payment runs, and a client's session is
/// the same session whichever wallet pays with its cookies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lane {
    None,
    Session(SessionId),
}

pub struct Dispatcher {
    sh: Arc<Shared>,
    waiting: VecDeque<Work>,
    busy_wallets: HashSet<String>,
    owners: Arc<OwnerPool>,
    /// Fragment sessions running a payment, owner's and clients' alike. Kept by identity,
    /// so that a payment started before a replacement keeps its session busy until it
    /// finishes, even if the same Fragment session is in the new list at another position,
    /// and so that two wallets paying with one client's cookies take turns.
    busy_sessions: HashSet<SessionId>,
    running: usize,
    idle_waiters: Vec<oneshot::Sender<()>>,
    tick: Duration,
    /// Shutting down: nothing new starts; what runs may finish.
    stopping: bool,
}

impl Dispatcher {
    pub fn new(sh: Arc<Shared>, owners: Arc<OwnerPool>, tick: Duration) -> Dispatcher {
        Dispatcher {
            sh,
            waiting: VecDeque::new(),
            busy_wallets: HashSet::new(),
            owners,
            busy_sessions: HashSet::new(),
            running: 0,
            idle_waiters: Vec::new(),
            tick,
            stopping: false,
        }
    }

    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.stopping {
            if self.running == 0 {
                for w in self.idle_waiters.drain(..) {
                    let _ = w.send(());
                }
            }
            return;
        }
        self.time_out_overdue();
        // One look at the pool per round; a replacement meanwhile is seen at the next round.
        let owners = self.owners.sessions();
        let mut i = 0;
        while i < self.waiting.len() {
            let wallet = self.waiting[i].wallet();
            if self.busy_wallets.contains(&wallet) {
                i += 1;
                continue;
            }
            let (lane, owner) = match &self.waiting[i] {
                Work::Reconcile(..) => (Lane::None, None),
                Work::Pay(job) => match &job.client_session {
                    // The client's own session: one payment at a time on it, whichever
                    // wallet pays.
                    Some(own) if self.busy_sessions.contains(&own.id()) => {
                        i += 1;
                        continue;
                    }
                    Some(own) => (Lane::Session(own.id()), None),
                    None => match owners
                        .iter()
                        .enumerate()
                        .find(|(_, o)| !self.busy_sessions.contains(&o.lane))
                    {
                        Some((n, o)) => (Lane::Session(o.lane), Some((n, o.session.clone()))),
                        None => {
                            i += 1;
                            continue;
                        }
                    },
                },
            };
            let Some(work) = self.waiting.remove(i) else {
                break;
            };
            self.busy_wallets.insert(wallet.clone());
            if let Lane::Session(id) = lane {
                self.busy_sessions.insert(id);
            }
            self.running += 1;
            let task = match work {
                Work::Reconcile(order, submitted) => Task::Reconcile(order, submitted),
                Work::Pay(job) => {
                    let (session, name) = match owner {
                        Some((n, session)) => (session, format!("owner:{n}")),
                        None => {
                            let own = job.client_session.clone();
                            (own.expect("a client lane has a session"), "client".into())
                        }
                    };
                    Task::Pay(job, session, name)
                }
            };
            let sh = Arc::clone(&self.sh);
            let me = ctx.address();
            actix::spawn(async move {
                match task {
                    Task::Pay(job, session, name) => payment::pay(&sh, *job, session, name).await,
                    Task::Reconcile(order, submitted) => {
                        payment::reconcile(&sh, *order, *submitted).await
                    }
                }
                me.do_send(Finished { wallet, lane });
            });
        }
        if self.running == 0 && self.waiting.is_empty() {
            for w in self.idle_waiters.drain(..) {
                let _ = w.send(());
            }
        }
    }

    fn time_out_overdue(&mut self) {
        let now = Utc::now();
        let (overdue, keep): (Vec<Work>, Vec<Work>) = self
            .waiting
            .drain(..)
            .partition(|w| matches!(w, Work::Pay(job) if job.deadline <= now));
        self.waiting = keep.into();
        for work in overdue {
            let Work::Pay(job) = work else { continue };
            let sh = Arc::clone(&self.sh);
            // The job (and the key in it) is dropped here; only ids go on.
            let (order_id, request_id) = (job.order.order_id, job.request_id);
            drop(job);
            actix::spawn(async move {
                let cmd = OrderCommand::TimeOut {
                    request_id,
                    now: Utc::now(),
                };
                if let Err(e) = sh
                    .registry
                    .order(order_id, cmd, EventMetadata::correlated(request_id))
                    .await
                {
                    tracing::warn!(%order_id, error = %e, "cannot record a queue timeout");
                }
            });
        }
    }
}

impl Actor for Dispatcher {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.tick, |act, ctx| act.pump(ctx));
    }
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Submit(pub Work);

impl Handler<Submit> for Dispatcher {
    type Result = ();
    fn handle(&mut self, msg: Submit, ctx: &mut Self::Context) {
        self.waiting.push_back(msg.0);
        self.pump(ctx);
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Finished {
    wallet: String,
    lane: Lane,
}

impl Handler<Finished> for Dispatcher {
    type Result = ();
    fn handle(&mut self, msg: Finished, ctx: &mut Self::Context) {
        self.busy_wallets.remove(&msg.wallet);
        if let Lane::Session(id) = msg.lane {
            self.busy_sessions.remove(&id);
        }
        self.running -= 1;
        self.pump(ctx);
    }
}

/// Shutting down (API.md, "Restarts"): payments already running may finish, but nothing new
/// starts. Requests still waiting end now, failed with SERVICE_UNAVAILABLE and no funds
/// moved, and their orders can be paid again after the restart; their seeds are dropped.
/// Recorded submissions waiting for their wallet are left to the next start's reconciliation.
/// Answers once every waiting request's end is recorded.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop;

impl Handler<Stop> for Dispatcher {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, _: Stop, _: &mut Self::Context) -> Self::Result {
        self.stopping = true;
        let ended: Vec<_> = self
            .waiting
            .drain(..)
            .filter_map(|w| match w {
                Work::Pay(job) => Some((job.order.order_id, job.request_id)),
                Work::Reconcile(..) => None,
            })
            .collect();
        let sh = Arc::clone(&self.sh);
        Box::pin(async move {
            for (order_id, request_id) in ended {
                let cmd = OrderCommand::Abandon {
                    request_id,
                    error_code: "SERVICE_UNAVAILABLE".into(),
                    error: "the service shut down before the payment was made; no funds moved. The order can be paid again until it expires".into(),
                    now: Utc::now(),
                };
                if let Err(e) = sh
                    .registry
                    .order(order_id, cmd, EventMetadata::correlated(request_id))
                    .await
                {
                    // The next start abandons it instead.
                    tracing::warn!(%order_id, error = %e, "cannot end a waiting request at shutdown");
                }
            }
        })
    }
}

/// Answers once nothing waits and nothing runs: "process what is pending" for tests and
/// graceful shutdown.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WhenIdle(pub oneshot::Sender<()>);

impl Handler<WhenIdle> for Dispatcher {
    type Result = ();
    fn handle(&mut self, msg: WhenIdle, ctx: &mut Self::Context) {
        self.idle_waiters.push(msg.0);
        self.pump(ctx);
    }
}

/// The owner sessions were replaced: waiting payments may start on the new ones now.
#[derive(Message)]
#[rtype(result = "()")]
pub struct OwnersChanged;

impl Handler<OwnersChanged> for Dispatcher {
    type Result = ();
    fn handle(&mut self, _: OwnersChanged, ctx: &mut Self::Context) {
        self.pump(ctx);
    }
}
