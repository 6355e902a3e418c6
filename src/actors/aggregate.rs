//! Actors for the two aggregates, orders and wallets. Each one owns its state, rebuilt from
//! its stream when it starts; handles one command at a time (`AtomicResponse` holds the
//! mailbox until the append is done); appends with the version it folded; and on a conflict
//! (another writer got there first) reloads and decides again, never overwriting.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use events::{Event, EventMetadata, ExpectedVersion};

use super::CoreError;
use crate::domain::{
    order, wallet, DomainError, OrderCommand, OrderState, Policy, WalletCommand, WalletState,
};
use crate::store::{EventStore, StoreError};

/// A conflict means another writer appended between our read and our write; a few
/// reloads settle it unless something is badly wrong.
const MAX_CONFLICT_RETRIES: usize = 5;

/// The decision logic of one kind of stream, for the generic actor below.
pub trait Aggregate: Unpin + 'static {
    type State: Clone + Default + Send + Unpin + 'static;
    type Command: Clone + Send + 'static;
    fn evolve(state: &mut Self::State, event: &Event);
    fn version(state: &Self::State) -> u64;
    fn decide(
        &self,
        state: &Self::State,
        command: Self::Command,
        policy: &Policy,
    ) -> Result<Vec<Event>, DomainError>;
}

pub struct OrderAggregate;

impl Aggregate for OrderAggregate {
    type State = OrderState;
    type Command = OrderCommand;
    fn evolve(state: &mut OrderState, event: &Event) {
        state.evolve(event)
    }
    fn version(state: &OrderState) -> u64 {
        state.version
    }
    fn decide(
        &self,
        s: &OrderState,
        c: OrderCommand,
        p: &Policy,
    ) -> Result<Vec<Event>, DomainError> {
        order::decide(s, c, p)
    }
}

pub struct WalletAggregate {
    pub address: String,
}

impl Aggregate for WalletAggregate {
    type State = WalletState;
    type Command = WalletCommand;
    fn evolve(state: &mut WalletState, event: &Event) {
        state.evolve(event)
    }
    fn version(state: &WalletState) -> u64 {
        state.version
    }
    fn decide(
        &self,
        s: &WalletState,
        c: WalletCommand,
        p: &Policy,
    ) -> Result<Vec<Event>, DomainError> {
        wallet::decide(s, &self.address, c, p)
    }
}

/// The state after a command, and the global position of the last event it appended (to
/// wait for the projections), or `None` when the command changed nothing.
pub type Executed<S> = (S, Option<u64>);

pub struct AggregateActor<A: Aggregate> {
    aggregate: Arc<A>,
    stream: String,
    state: A::State,
    store: Arc<dyn EventStore>,
    policy: Arc<Policy>,
    last_used: Instant,
    idle_after: Duration,
}

impl<A: Aggregate> AggregateActor<A> {
    pub fn new(
        aggregate: A,
        stream: String,
        store: Arc<dyn EventStore>,
        policy: Arc<Policy>,
        idle_after: Duration,
    ) -> Self {
        AggregateActor {
            aggregate: Arc::new(aggregate),
            stream,
            state: A::State::default(),
            store,
            policy,
            last_used: Instant::now(),
            idle_after,
        }
    }
}

/// Folds a stream into its aggregate's state, a page at a time: a long stream (a wallet of
/// many purchases) costs time to load, never memory beyond one page and the state.
pub async fn load<A: Aggregate>(
    store: &dyn EventStore,
    stream: &str,
) -> Result<A::State, CoreError> {
    const PAGE: usize = 512;
    let mut state = A::State::default();
    let mut next = 1;
    loop {
        let page = store.read_stream(stream, next, PAGE).await?;
        let done = page.len() < PAGE;
        for recorded in &page {
            let event = Event::from_recorded(recorded)
                .map_err(|e| CoreError::Store(StoreError::undecodable(recorded, e)))?;
            A::evolve(&mut state, &event);
            next = recorded.version + 1;
        }
        if done {
            return Ok(state);
        }
    }
}

impl<A: Aggregate> Actor for AggregateActor<A> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let store = Arc::clone(&self.store);
        let stream = self.stream.clone();
        // `wait` holds every message until the state is loaded.
        ctx.wait(
            async move { load::<A>(store.as_ref(), &stream).await }
                .into_actor(self)
                .map(|loaded, act, ctx| match loaded {
                    Ok(state) => act.state = state,
                    Err(e) => {
                        tracing::error!(stream = %act.stream, error = %e, "cannot load stream; stopping its actor");
                        ctx.stop();
                    }
                }),
        );
        // Passivation: an actor nobody used for a while stops; the registry starts a new
        // one, which reloads the stream, when the next command comes.
        let tick = (self.idle_after / 2).max(Duration::from_millis(50));
        ctx.run_interval(tick, |act, ctx| {
            if act.last_used.elapsed() >= act.idle_after {
                ctx.stop();
            }
        });
    }
}

/// Carries out a command.
#[derive(Message)]
#[rtype(result = "Result<Executed<A::State>, CoreError>")]
pub struct Execute<A: Aggregate> {
    pub command: A::Command,
    pub metadata: EventMetadata,
}

/// Reads the current state.
#[derive(Message)]
#[rtype(result = "A::State")]
pub struct GetState<A: Aggregate>(pub std::marker::PhantomData<A>);

impl<A: Aggregate> GetState<A> {
    pub fn new() -> Self {
        GetState(std::marker::PhantomData)
    }
}

impl<A: Aggregate> Default for GetState<A> {
    fn default() -> Self {
        Self::new()
    }
}

impl<A: Aggregate> Handler<GetState<A>> for AggregateActor<A> {
    type Result = MessageResult<GetState<A>>;
    fn handle(&mut self, _: GetState<A>, _: &mut Self::Context) -> Self::Result {
        self.last_used = Instant::now();
        MessageResult(self.state.clone())
    }
}

impl<A: Aggregate> Handler<Execute<A>> for AggregateActor<A> {
    type Result = AtomicResponse<Self, Result<Executed<A::State>, CoreError>>;

    fn handle(&mut self, msg: Execute<A>, _: &mut Self::Context) -> Self::Result {
        self.last_used = Instant::now();
        let store = Arc::clone(&self.store);
        let aggregate = Arc::clone(&self.aggregate);
        let policy = Arc::clone(&self.policy);
        let stream = self.stream.clone();
        let state = self.state.clone();
        AtomicResponse::new(Box::pin(
            async move {
                execute(
                    aggregate.as_ref(),
                    store.as_ref(),
                    &stream,
                    state,
                    msg,
                    &policy,
                )
                .await
            }
            .into_actor(self)
            .map(|result, act, _| {
                if let Ok((state, _)) = &result {
                    act.state = state.clone();
                }
                result
            }),
        ))
    }
}

async fn execute<A: Aggregate>(
    aggregate: &A,
    store: &dyn EventStore,
    stream: &str,
    mut state: A::State,
    msg: Execute<A>,
    policy: &Policy,
) -> Result<Executed<A::State>, CoreError> {
    for _ in 0..MAX_CONFLICT_RETRIES {
        let events = aggregate.decide(&state, msg.command.clone(), policy)?;
        if events.is_empty() {
            return Ok((state, None));
        }
        let new = events
            .iter()
            .map(|e| e.to_new_event(msg.metadata))
            .collect();
        match store
            .append(stream, ExpectedVersion::Exact(A::version(&state)), new)
            .await
        {
            Ok(done) => {
                for e in &events {
                    A::evolve(&mut state, e);
                }
                return Ok((state, Some(done.position)));
            }
            Err(StoreError::Conflict { actual, .. }) => {
                tracing::info!(stream, actual, "append conflict; reloading the stream");
                state = load::<A>(store, stream).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(CoreError::Internal(format!(
        "stream {stream} kept changing under {MAX_CONFLICT_RETRIES} attempts"
    )))
}

pub type OrderActor = AggregateActor<OrderAggregate>;
pub type WalletActor = AggregateActor<WalletAggregate>;
