//! The queue dispatcher: takes paid orders into the queue and starts waiting work in FIFO
//! order when its wallet and its Fragment session are free. One in-flight transfer per
//! wallet (its seqno is sequential); one flow per Fragment session (the site keeps one
//! current purchase per session); the owner's sessions form a pool, which the operator can
//! replace while payments run (`owners`). Requests that wait past their deadline time out
//! here.
//!
//! Nothing queued is ever left without a holder: the dispatcher itself records a payment
//! (`Enqueue`) and queues it in the same step, so a client that goes away mid-request cannot
//! leave a `queued` order nobody runs; a task that panics or is dropped still hands its
//! wallet and session back (`Release`) and its request still ends; and a sweep times out any
//! queued request past its deadline that the dispatcher does not hold, whoever lost it.

use std::collections::{HashSet, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::Utc;
use events::{EventMetadata, OrderCreated, PaymentSubmitted};
use futures_util::FutureExt;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::aggregate::Executed;
use super::payment::{self, Job, PayerKey};
use super::{CoreError, Shared};
use crate::domain::{OrderCommand, OrderState, OrderStatus};
use crate::fragment::client::SessionId;
use crate::fragment::FragmentSession;

/// How often (in ticks) the dispatcher looks for queued requests it does not hold.
const SWEEP_EVERY_TICKS: u32 = 20;

pub enum Work {
    Pay(Box<Job>),
    /// A submission recorded before a restart (or by a payment task that failed after
    /// recording it): needs its wallet, no Fragment session.
    Reconcile(Box<OrderCreated>, Box<PaymentSubmitted>),
    /// A paid order whose delivery check a restart cut short: needs neither the wallet nor
    /// a lane (its Fragment session's turn lock keeps it from overlapping other flows).
    Deliver(Box<OrderCreated>, Box<PaymentSubmitted>),
    /// A message the client's wallet signed (a checkout), recorded as submitted: needs its
    /// wallet (nothing else may be signed for it while the chain decides), no lane.
    Follow(Box<Follow>),
}

/// A checkout's recorded submission to follow to its end.
pub struct Follow {
    pub order: OrderCreated,
    pub submitted: PaymentSubmitted,
    /// Broadcast it (false: the client did).
    pub broadcast: bool,
    /// The client's own Fragment session (KYC), for the delivery check.
    pub client_session: Option<FragmentSession>,
}

impl Work {
    /// The wallet whose seqno the work needs, if any.
    fn wallet(&self) -> Option<String> {
        match self {
            Work::Pay(job) => Some(job.payer.wallet.raw_address()),
            Work::Reconcile(_, s) => Some(s.wallet_address.clone()),
            Work::Follow(f) => Some(f.submitted.wallet_address.clone()),
            Work::Deliver(..) => None,
        }
    }

    fn request_id(&self) -> Uuid {
        match self {
            Work::Pay(job) => job.request_id,
            Work::Reconcile(_, s) | Work::Deliver(_, s) => s.request_id,
            Work::Follow(f) => f.submitted.request_id,
        }
    }
}

/// Work that got its wallet (and, for a payment, its Fragment session and its name).
enum Task {
    Pay(Box<Job>, FragmentSession, String),
    Reconcile(Box<OrderCreated>, Box<PaymentSubmitted>),
    Deliver(Box<OrderCreated>, Box<PaymentSubmitted>),
    Follow(Box<Follow>),
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
    /// Requests whose task runs now.
    running: HashSet<Uuid>,
    /// Fragment sessions running a payment, owner's and clients' alike. Kept by identity,
    /// so that a payment started before a replacement keeps its session busy until it
    /// finishes, even if the same Fragment session is in the new list at another position,
    /// and so that two wallets paying with one client's cookies take turns.
    busy_sessions: HashSet<SessionId>,
    /// Payments being recorded by `Enqueue` (not yet waiting, not yet idle).
    enqueuing: usize,
    idle_waiters: Vec<oneshot::Sender<()>>,
    tick: Duration,
    ticks: u32,
    /// Shutting down: nothing new starts; what runs may finish.
    stopping: bool,
}

impl Dispatcher {
    pub fn new(sh: Arc<Shared>, tick: Duration) -> Dispatcher {
        Dispatcher {
            sh,
            waiting: VecDeque::new(),
            busy_wallets: HashSet::new(),
            running: HashSet::new(),
            busy_sessions: HashSet::new(),
            enqueuing: 0,
            idle_waiters: Vec::new(),
            tick,
            ticks: 0,
            stopping: false,
        }
    }

    fn idle(&self) -> bool {
        self.running.is_empty() && self.enqueuing == 0 && (self.waiting.is_empty() || self.stopping)
    }

    fn wake_idle_waiters(&mut self) {
        if self.idle() {
            for w in self.idle_waiters.drain(..) {
                let _ = w.send(());
            }
        }
    }

    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.stopping {
            self.wake_idle_waiters();
            return;
        }
        self.time_out_overdue();
        // One look at the pool per round; a replacement meanwhile is seen at the next round.
        let owners = self.sh.owners.sessions();
        let mut i = 0;
        while i < self.waiting.len() {
            let wallet = self.waiting[i].wallet();
            if wallet
                .as_ref()
                .is_some_and(|w| self.busy_wallets.contains(w))
            {
                i += 1;
                continue;
            }
            let (lane, owner) = match &self.waiting[i] {
                Work::Reconcile(..) | Work::Deliver(..) | Work::Follow(..) => (Lane::None, None),
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
            let request_id = work.request_id();
            if let Some(w) = &wallet {
                self.busy_wallets.insert(w.clone());
            }
            if let Lane::Session(id) = lane {
                self.busy_sessions.insert(id);
            }
            self.running.insert(request_id);
            let task = match work {
                Work::Reconcile(order, submitted) => Task::Reconcile(order, submitted),
                Work::Deliver(order, submitted) => Task::Deliver(order, submitted),
                Work::Follow(follow) => Task::Follow(follow),
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
            let release = Release {
                me: ctx.address(),
                wallet,
                lane,
                request_id,
            };
            actix::spawn(run(Arc::clone(&self.sh), task, release));
        }
        self.wake_idle_waiters();
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
            // The job (and the key in it) is dropped here; only ids go on.
            let (order_id, request_id) = (job.order.order_id, job.request_id);
            drop(job);
            actix::spawn(time_out(Arc::clone(&self.sh), order_id, request_id));
        }
    }

    /// Times out queued requests past their deadline that this dispatcher does not hold.
    /// None should exist (`Enqueue` records and queues in one step), but a request is
    /// client money waiting on us: if one is ever lost, it still ends, no funds moved.
    fn sweep_unheld(&mut self) {
        let now = Utc::now();
        let held: HashSet<Uuid> = self
            .waiting
            .iter()
            .map(Work::request_id)
            .chain(self.running.iter().copied())
            .collect();
        let lost: Vec<Uuid> = self
            .sh
            .runner
            .live()
            .queue
            .waiting()
            .filter(|(r, deadline)| !held.contains(r) && *deadline <= now)
            .map(|(r, _)| r)
            .collect();
        for request_id in lost {
            let sh = Arc::clone(&self.sh);
            actix::spawn(async move {
                match sh.runner.request(request_id).await {
                    Ok(Some(request)) => {
                        let order_id = request.order_id;
                        tracing::error!(%order_id, %request_id, "a queued request had no holder; timing it out");
                        time_out(sh, order_id, request_id).await;
                    }
                    Ok(None) => tracing::error!(%request_id, "a queued request has no row"),
                    Err(e) => {
                        tracing::warn!(%request_id, error = %e, "cannot read a queued request nobody holds")
                    }
                }
            });
        }
    }
}

async fn time_out(sh: Arc<Shared>, order_id: Uuid, request_id: Uuid) {
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
}

/// Hands a task's wallet and session back to the dispatcher when the task ends, however it
/// ends: returned, panicked (the panic is caught in `run`) or dropped with its runtime.
struct Release {
    me: Addr<Dispatcher>,
    wallet: Option<String>,
    lane: Lane,
    request_id: Uuid,
}

impl Release {
    /// Gives the Fragment session back before the task ends (a reconciliation after a panic
    /// needs only the wallet).
    fn free_session(&mut self) {
        if let Lane::Session(id) = std::mem::replace(&mut self.lane, Lane::None) {
            self.me.do_send(FreeSession(id));
        }
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        self.me.do_send(Finished {
            wallet: self.wallet.take(),
            lane: self.lane,
            request_id: self.request_id,
        });
    }
}

/// Runs `work`, catching a panic in it.
async fn caught(work: impl std::future::Future<Output = ()>) -> Result<(), String> {
    AssertUnwindSafe(work)
        .catch_unwind()
        .await
        .map_err(|panic| crate::panic_message(&*panic))
}

/// Runs one task. A panic in it is caught and logged, and its request still ends, saying
/// truthfully whether money may have moved (`after_panic`). A payment whose signed message
/// was recorded keeps its wallet while its reconciliation runs, here, in the same task:
/// its seqno is taken, so nothing else may be signed for that wallet until the chain has
/// decided.
async fn run(sh: Arc<Shared>, task: Task, mut release: Release) {
    let (order_id, request_id) = match &task {
        Task::Pay(job, ..) => (job.order.order_id, job.request_id),
        Task::Reconcile(order, submitted) | Task::Deliver(order, submitted) => {
            (order.order_id, submitted.request_id)
        }
        Task::Follow(f) => (f.order.order_id, f.submitted.request_id),
    };
    let mut outcome = caught(async {
        match task {
            Task::Pay(job, session, name) => payment::pay(&sh, *job, session, name).await,
            Task::Reconcile(order, submitted) => payment::reconcile(&sh, *order, *submitted).await,
            Task::Deliver(order, submitted) => {
                payment::deliver_recorded(&sh, &order, &submitted, None).await
            }
            Task::Follow(f) => {
                let Follow {
                    order,
                    submitted,
                    broadcast,
                    client_session,
                } = *f;
                payment::follow(&sh, order, submitted, broadcast, client_session).await
            }
        }
    })
    .await;
    let mut retry_in = Duration::ZERO;
    while let Err(panic) = outcome {
        tracing::error!(%order_id, %request_id, %panic, "a payment task panicked");
        if !sh.alive() {
            break;
        }
        let Some((order, submitted)) = after_panic(&sh, order_id, request_id).await else {
            break;
        };
        release.free_session();
        // A reconciliation that panics again is retried, never in a tight loop.
        tokio::time::sleep(retry_in).await;
        retry_in = (retry_in * 2).clamp(Duration::from_secs(1), Duration::from_secs(60));
        if !sh.alive() {
            break;
        }
        outcome = caught(payment::reconcile(&sh, order, submitted)).await;
    }
    drop(release);
}

/// Ends a request whose task panicked, from what the order's own stream says it got to.
/// Nothing signed and recorded means nothing was broadcast (a message is recorded before it
/// is sent): the request ends, no funds moved, and the order can be paid again. A recorded
/// message may be on chain, so only the chain may end it: returned, for reconciliation. An
/// order already paid only lacks its delivery verdict.
async fn after_panic(
    sh: &Arc<Shared>,
    order_id: Uuid,
    request_id: Uuid,
) -> Option<(OrderCreated, PaymentSubmitted)> {
    let meta = EventMetadata::correlated(request_id);
    let state: OrderState = match sh.registry.order_state(order_id).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(%order_id, error = %e, "cannot read the order of a panicked payment; the next start finishes it");
            return None;
        }
    };
    let request = state
        .request
        .as_ref()
        .filter(|r| r.request_id == request_id)?;
    match (state.status, &request.submitted) {
        _ if state.may_reopen() => {
            let cmd = OrderCommand::Abandon {
                request_id,
                error_code: "INTERNAL_ERROR".into(),
                error: "an internal error stopped the payment before anything was signed; no funds moved. The order can be paid again until it expires".into(),
                now: Utc::now(),
            };
            if let Err(e) = sh.registry.order(order_id, cmd, meta).await {
                tracing::error!(%order_id, error = %e, "cannot end a panicked payment");
            }
            None
        }
        (Some(OrderStatus::Processing), Some(submitted)) => {
            Some((state.created.clone()?, submitted.clone()))
        }
        _ if state.awaits_delivery_verdict() => {
            let cmd = OrderCommand::DeliveryUnconfirmed {
                request_id,
                reason: "an internal error stopped the delivery check; check with Fragment that it delivered".into(),
                now: Utc::now(),
            };
            if let Err(e) = sh.registry.order(order_id, cmd, meta).await {
                tracing::error!(%order_id, error = %e, "cannot record the delivery state of a panicked payment");
            }
            None
        }
        _ => None,
    }
}

impl Actor for Dispatcher {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.tick, |act, ctx| {
            act.ticks = act.ticks.wrapping_add(1);
            act.pump(ctx);
            // From the timer only: `pump` also runs on every message.
            if !act.stopping && act.ticks.is_multiple_of(SWEEP_EVERY_TICKS) {
                act.sweep_unheld();
            }
        });
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

/// Records a payment (`OrderCommand::Pay`, or a checkout's `SubmitCheckout`) and queues it,
/// as one step of the dispatcher's: whatever becomes of the caller, a payment that was
/// recorded is queued here. The answer goes to `reply` (the state after the command, and the
/// position of what it appended, `None` when the order was already paid by this wallet).
pub struct Enqueue {
    pub order: OrderCreated,
    pub request_id: Uuid,
    pub command: OrderCommand,
    pub payment: Payment,
    pub reply: oneshot::Sender<Result<Executed<OrderState>, CoreError>>,
}

/// Who signs the payment being enqueued.
pub enum Payment {
    /// The gateway, with the client's key, when the payment's turn comes.
    Key {
        /// Boxed: a key pair and its wallet are far larger than the other variant.
        payer: Box<PayerKey>,
        client_session: Option<FragmentSession>,
    },
    /// The client's wallet did already (a checkout): the command records the submission.
    Signed {
        broadcast: bool,
        client_session: Option<FragmentSession>,
    },
}

impl Message for Enqueue {
    type Result = ();
}

impl Handler<Enqueue> for Dispatcher {
    type Result = ();
    fn handle(&mut self, msg: Enqueue, ctx: &mut Self::Context) {
        let Enqueue {
            order,
            request_id,
            command,
            payment,
            reply,
        } = msg;
        if self.stopping {
            let _ = reply.send(Err(CoreError::Unavailable(
                "the service is shutting down; pay again in a moment".into(),
            )));
            return;
        }
        // Every waiting payment holds its wallet's key: the queue is bounded, and a payment
        // past the bound is refused before anything is recorded.
        let waiting = self.waiting.len() + self.enqueuing;
        if waiting >= self.sh.config.queue_limit {
            drop(payment);
            let _ = reply.send(Err(CoreError::QueueFull { waiting }));
            return;
        }
        self.enqueuing += 1;
        let sh = Arc::clone(&self.sh);
        let order_id = order.order_id;
        let recorded = async move {
            sh.registry
                .order(order_id, command, EventMetadata::correlated(request_id))
                .await
        };
        ctx.spawn(recorded.into_actor(self).map(move |result, act, ctx| {
            act.enqueuing -= 1;
            let new_request = result
                .as_ref()
                .ok()
                .filter(|(_, position)| position.is_some())
                .and_then(|(state, _)| state.request.as_ref())
                .filter(|r| r.request_id == request_id);
            match (new_request, payment) {
                // Recorded after the stop began: end it now, as the stop ended the others,
                // rather than leave it for the next start.
                (Some(_), Payment::Key { payer, .. }) if act.stopping => {
                    drop(payer);
                    actix::spawn(abandon_at_stop(Arc::clone(&act.sh), order_id, request_id));
                }
                (
                    Some(request),
                    Payment::Key {
                        payer,
                        client_session,
                    },
                ) => act.waiting.push_back(Work::Pay(Box::new(Job {
                    order,
                    request_id,
                    deadline: request.queue_deadline,
                    payer: *payer,
                    client_session,
                }))),
                // A signed message recorded after the stop began may be on chain already:
                // the next start follows it, like every recorded submission.
                (Some(_), Payment::Signed { .. }) if act.stopping => {}
                (
                    Some(request),
                    Payment::Signed {
                        broadcast,
                        client_session,
                    },
                ) => match request.submitted.clone() {
                    Some(submitted) => act.waiting.push_back(Work::Follow(Box::new(Follow {
                        order,
                        submitted,
                        broadcast,
                        client_session,
                    }))),
                    None => {
                        tracing::error!(%order_id, "a checkout was recorded without its submission")
                    }
                },
                // Refused, or already paid by this wallet: the key goes now.
                (None, payment) => drop(payment),
            }
            let _ = reply.send(result);
            act.pump(ctx);
        }));
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct FreeSession(SessionId);

impl Handler<FreeSession> for Dispatcher {
    type Result = ();
    fn handle(&mut self, msg: FreeSession, ctx: &mut Self::Context) {
        self.busy_sessions.remove(&msg.0);
        self.pump(ctx);
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Finished {
    wallet: Option<String>,
    lane: Lane,
    request_id: Uuid,
}

impl Handler<Finished> for Dispatcher {
    type Result = ();
    fn handle(&mut self, msg: Finished, ctx: &mut Self::Context) {
        if let Some(w) = &msg.wallet {
            self.busy_wallets.remove(w);
        }
        if let Lane::Session(id) = msg.lane {
            self.busy_sessions.remove(&id);
        }
        self.running.remove(&msg.request_id);
        self.pump(ctx);
    }
}

async fn abandon_at_stop(sh: Arc<Shared>, order_id: Uuid, request_id: Uuid) {
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
                // Finished from the log at the next start.
                Work::Reconcile(..) | Work::Deliver(..) | Work::Follow(..) => None,
            })
            .collect();
        let sh = Arc::clone(&self.sh);
        Box::pin(async move {
            for (order_id, request_id) in ended {
                abandon_at_stop(Arc::clone(&sh), order_id, request_id).await;
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
