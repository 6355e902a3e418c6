//! The projection runner: folds the log into the read models, live, and keeps a checkpoint
//! (the models with the position they reached) so a restart only folds what is new.
//!
//! Readers wanting to see their own write wait for the position their append returned
//! (`wait_for`), so an API answer never shows a state older than the command it answers.
//!
//! The runner lives on a thread of its own, with its own small runtime: folding, loading the
//! checkpoint and writing it (serializing every model, fsyncs) never run on the core's single
//! thread, where they would stall every actor. A write runs on a blocking thread from a copy,
//! so the fold goes on meanwhile and the models' lock is held only for the copy.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use projections::{ReadModels, PROJECTIONS_VERSION};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::store::{EventStore, StoreError, Subscription};

/// Checkpoint at most this often while events flow, and whenever the runner stops.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(5);

/// Writes the models to the checkpoint file: `save_checkpoint`, unless a test needs a slow
/// or failing disk.
pub type CheckpointWriter = Arc<dyn Fn(&Path, &ReadModels) -> std::io::Result<()> + Send + Sync>;

/// Where the checkpoint lives and how it is written.
#[derive(Clone)]
pub struct Checkpoint {
    pub path: PathBuf,
    /// At most this often while events flow.
    pub every: Duration,
    pub write: CheckpointWriter,
}

impl Checkpoint {
    /// The service's checkpoint: `save_checkpoint` to `path` every `CHECKPOINT_EVERY`.
    pub fn at(path: PathBuf) -> Checkpoint {
        Checkpoint {
            path,
            every: CHECKPOINT_EVERY,
            write: Arc::new(save_checkpoint),
        }
    }
}

/// A checkpoint and the lock that keeps its writes one at a time: they share the temp file,
/// and a later write must not be overtaken by an earlier, older one.
struct CheckpointFile {
    checkpoint: Checkpoint,
    writing: std::sync::Mutex<()>,
}

impl CheckpointFile {
    /// Blocks for the serialization and the fsyncs: call it on a blocking thread. A checkpoint
    /// that cannot be written costs a longer catch-up at the next start, nothing more: the
    /// failure is logged and the runner goes on.
    fn write(&self, models: &ReadModels) {
        let _one_at_a_time = self
            .writing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Checkpoint { path, write, .. } = &self.checkpoint;
        if let Err(e) = write(path, models) {
            tracing::warn!(error = %e, path = %path.display(), "cannot write the projection checkpoint");
        }
    }
}

pub struct ProjectionRunner {
    models: Arc<RwLock<ReadModels>>,
    position: watch::Receiver<u64>,
    stop: watch::Sender<bool>,
    /// Never sent on: the runner's thread drops the sender once it has stopped following the
    /// log and its last write is done, which is what `stop` waits for.
    finished: watch::Receiver<()>,
    checkpoint: Option<Arc<CheckpointFile>>,
}

impl ProjectionRunner {
    /// Loads the checkpoint (if any, and of this build's projection version), catches up
    /// with the log, then follows it live.
    pub async fn start(
        store: Arc<dyn EventStore>,
        checkpoint: Option<PathBuf>,
    ) -> Result<ProjectionRunner, StoreError> {
        Self::start_with(store, checkpoint.map(Checkpoint::at)).await
    }

    /// `start`, with the checkpoint's timing and writer chosen by the caller.
    pub async fn start_with(
        store: Arc<dyn EventStore>,
        checkpoint: Option<Checkpoint>,
    ) -> Result<ProjectionRunner, StoreError> {
        let checkpoint = checkpoint.map(|checkpoint| {
            Arc::new(CheckpointFile {
                checkpoint,
                writing: Default::default(),
            })
        });
        let (ready_tx, ready) = oneshot::channel();
        let (stop, stopped) = watch::channel(false);
        let (finished_tx, finished) = watch::channel(());
        let file = checkpoint.clone();
        std::thread::Builder::new()
            .name("projection-runner".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready_tx.send(Err(StoreError::Backend(format!(
                            "starting the projection runner's runtime: {e}"
                        ))));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let _finished = finished_tx;
                    let (models, subscription) = match catch_up(store, file.as_deref()).await {
                        Ok(caught_up) => caught_up,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let (position_tx, position) = watch::channel(models.position);
                    let models = Arc::new(RwLock::new(models));
                    if ready_tx.send(Ok((Arc::clone(&models), position))).is_ok() {
                        follow(subscription, models, position_tx, stopped, file).await;
                    }
                });
            })
            .map_err(|e| StoreError::Backend(format!("starting the projection runner: {e}")))?;
        let (models, position) = ready.await.map_err(|_| {
            StoreError::Backend("the projection runner stopped while catching up".into())
        })??;
        Ok(ProjectionRunner {
            models,
            position,
            stop,
            finished,
            checkpoint,
        })
    }

    pub fn read(&self) -> RwLockReadGuard<'_, ReadModels> {
        self.models.read().expect("read models poisoned")
    }

    /// A copy of the models, for comparisons and reports.
    pub fn snapshot(&self) -> ReadModels {
        self.read().clone()
    }

    pub fn position(&self) -> u64 {
        *self.position.borrow()
    }

    /// Puts `models` in place of the live ones if both are at the same position, and says
    /// whether it did. Events are folded under the write lock, so at the same position both
    /// describe the same log; the runner then goes on folding from there. If the live
    /// models moved on meanwhile, nothing changes.
    pub fn replace_at_same_position(&self, models: ReadModels) -> bool {
        let mut live = self.models.write().expect("read models poisoned");
        if live.position != models.position {
            return false;
        }
        *live = models;
        true
    }

    /// Waits until the models include position `p`.
    pub async fn wait_for(&self, p: u64) {
        let mut rx = self.position.clone();
        // The runner only stops with the core; an error here means the wait is moot.
        let _ = rx.wait_for(|&pos| pos >= p).await;
    }

    /// Stops following the log and writes the checkpoint, returning once it is written. The
    /// models stay readable; a second call does nothing more than write the checkpoint again.
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let mut finished = self.finished.clone();
        while finished.changed().await.is_ok() {}
        if let Some(file) = &self.checkpoint {
            let (file, models) = (Arc::clone(file), Arc::clone(&self.models));
            // Copied (doubling the models' memory for the write) so that an admin
            // `replace_at_same_position` waiting for the write lock meanwhile cannot hold up
            // readers for a whole serialization.
            let write = tokio::task::spawn_blocking(move || {
                let snapshot = models.read().expect("read models poisoned").clone();
                file.write(&snapshot)
            });
            settle(write).await;
        }
    }
}

/// Loads the checkpoint, then folds what the log holds past it.
async fn catch_up(
    store: Arc<dyn EventStore>,
    checkpoint: Option<&CheckpointFile>,
) -> Result<(ReadModels, Subscription), StoreError> {
    let mut models = checkpoint
        .and_then(|c| load_checkpoint(&c.checkpoint.path))
        .unwrap_or_default();
    let head = store.head().await?;
    if models.position > head {
        // A checkpoint from another (or a restored older) log: it cannot be trusted.
        tracing::warn!(
            checkpoint = models.position,
            head,
            "projection checkpoint is ahead of the log; rebuilding"
        );
        models = ReadModels::new();
    }
    let mut subscription = Subscription::new(store, models.position);
    // Strict: an event this build cannot read stops the start (naming it), since recovery
    // decides what to do with each payment from these models and the log behind them.
    let mut unreadable = None;
    subscription
        .drain_now_with(|event| {
            if unreadable.is_none() {
                if let Err(e) = models.apply_recorded(&event) {
                    unreadable = Some(StoreError::undecodable(&event, e));
                }
            }
        })
        .await?;
    match unreadable {
        Some(e) => Err(e),
        None => Ok((models, subscription)),
    }
}

/// Folds the log as it grows until told to stop, starting a checkpoint write when one is due.
async fn follow(
    mut subscription: Subscription,
    models: Arc<RwLock<ReadModels>>,
    position: watch::Sender<u64>,
    mut stopped: watch::Receiver<bool>,
    checkpoint: Option<Arc<CheckpointFile>>,
) {
    let mut last_saved = Instant::now();
    let mut writing: Option<JoinHandle<()>> = None;
    loop {
        let next = tokio::select! {
            next = subscription.next() => next,
            _ = stopped.changed() => break,
        };
        let event = match next {
            Ok(event) => event,
            Err(e) => {
                tracing::error!(error = %e, "projection runner cannot read the log; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let folded = {
            let mut m = models.write().expect("read models poisoned");
            apply(&mut m, &event);
            m.position
        };
        position.send_replace(folded);
        let Some(file) = &checkpoint else {
            continue;
        };
        // One write at a time: a disk slower than the interval skips checkpoints instead of
        // piling up copies of the models.
        let idle = writing.as_ref().is_none_or(JoinHandle::is_finished);
        if idle && last_saved.elapsed() >= file.checkpoint.every {
            if let Some(done) = writing.take() {
                settle(done).await;
            }
            // The copy is taken here, where the only writer of the models is this loop: the
            // read lock it holds keeps readers going (no writer queues behind it) and stops
            // the fold only for the copy, not for the serialization and the fsyncs that follow
            // on a blocking thread. It doubles the models' memory while a write runs.
            let snapshot = models.read().expect("read models poisoned").clone();
            let file = Arc::clone(file);
            writing = Some(tokio::task::spawn_blocking(move || file.write(&snapshot)));
            last_saved = Instant::now();
        }
    }
    // `stop` writes next: this write must be done first, or it could land after that one.
    if let Some(write) = writing {
        settle(write).await;
    }
}

/// Waits for a checkpoint write; its own failures are logged where they happen, this logs a
/// panic (or a runtime shutting down under it) instead of taking the runner with it.
async fn settle(write: JoinHandle<()>) {
    if let Err(e) = write.await {
        tracing::error!(error = %e, "the projection checkpoint write did not finish");
    }
}

fn apply(models: &mut ReadModels, event: &events::RecordedEvent) {
    if let Err(e) = models.apply_recorded(event) {
        // Live (or in a rebuild for comparison), an event this build cannot read: skipping
        // keeps every other view live, and the error names the event so the operator can
        // upgrade or investigate. The next start refuses to run on it (`catch_up`).
        tracing::error!(position = event.position, event_type = %event.event_type, error = %e, "cannot fold event");
        models.position = event.position;
    }
}

/// Folds the whole log from position 0.
pub async fn rebuild(store: &Arc<dyn EventStore>) -> Result<ReadModels, StoreError> {
    let mut models = ReadModels::new();
    Subscription::new(Arc::clone(store), 0)
        .drain_now_with(|event| apply(&mut models, &event))
        .await?;
    Ok(models)
}

/// Folds the log from position 0 up to `up_to` and no further: the models as they should be
/// at that position, to compare with live ones that reached it.
pub async fn rebuild_until(
    store: &Arc<dyn EventStore>,
    up_to: u64,
) -> Result<ReadModels, StoreError> {
    let mut models = ReadModels::new();
    Subscription::new(Arc::clone(store), 0)
        .drain_now_with(|event| {
            if event.position <= up_to {
                apply(&mut models, &event)
            }
        })
        .await?;
    Ok(models)
}

pub fn load_checkpoint(path: &Path) -> Option<ReadModels> {
    let bytes = std::fs::read(path).ok()?;
    match serde_json::from_slice::<ReadModels>(&bytes) {
        Ok(m) if m.version == PROJECTIONS_VERSION => Some(m),
        Ok(m) => {
            tracing::info!(
                found = m.version,
                current = PROJECTIONS_VERSION,
                "projection checkpoint of another version; rebuilding"
            );
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "unreadable projection checkpoint; rebuilding");
            None
        }
    }
}

/// Writes the checkpoint atomically (temp file, fsync, rename): a crash leaves the old one
/// or the new one, never half of either.
pub fn save_checkpoint(path: &Path, models: &ReadModels) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(models).map_err(std::io::Error::other)?;
    crate::ops::write_atomically(path, &bytes, None)
}

#[cfg(test)]
mod tests {
    use events::{EventMetadata, ExpectedVersion, NewEvent};

    use super::*;
    use crate::store::gate::{Gate, LIMIT};
    use crate::store::SqliteStore;

    /// A checkpoint whose every write first waits at `gate`, as on a slow disk.
    fn gated(path: PathBuf, gate: &Arc<Gate>, every: Duration) -> Checkpoint {
        let gate = Arc::clone(gate);
        Checkpoint {
            path,
            every,
            write: Arc::new(move |path, models| {
                gate.pass();
                save_checkpoint(path, models)
            }),
        }
    }

    fn store(dir: &tempfile::TempDir) -> Arc<dyn EventStore> {
        Arc::new(SqliteStore::open(dir.path().join("events.sqlite3")).expect("open"))
    }

    /// Appends one event (of a type the models skip: the fold only has to move the position).
    async fn append(store: &Arc<dyn EventStore>) -> u64 {
        let event = NewEvent {
            event_id: uuid::Uuid::new_v4(),
            event_type: "Tested".into(),
            schema_version: 1,
            data: serde_json::json!({}),
            metadata: EventMetadata::default(),
        };
        store
            .append("test-1", ExpectedVersion::Any, vec![event])
            .await
            .expect("append")
            .position
    }

    /// The core's actors share one thread (an actix System runs a current-thread runtime, as
    /// this test does). While a checkpoint write waits at the gate, this thread must still run
    /// the test, and the fold must go on (so the write holds no lock on the models).
    #[tokio::test]
    async fn a_checkpoint_write_stalls_neither_the_core_thread_nor_the_fold() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(&dir);
        let path = dir.path().join("projections.json");
        let gate = Gate::new();
        // Every event is due a checkpoint: the first one starts a write.
        let checkpoint = gated(path.clone(), &gate, Duration::ZERO);
        let runner = ProjectionRunner::start_with(Arc::clone(&store), Some(checkpoint))
            .await
            .expect("start");
        append(&store).await;
        tokio::time::timeout(LIMIT * 2, gate.arrival())
            .await
            .expect("a checkpoint write started");

        // The gate is closed: the test runs on only if the write left this thread.
        let second = append(&store).await;
        tokio::time::timeout(LIMIT * 2, runner.wait_for(second))
            .await
            .expect("the fold goes on while a checkpoint is written");
        assert_eq!(runner.read().position, second);
        gate.open();
        runner.stop().await;

        assert!(
            !gate.timed_out(),
            "the checkpoint write blocked the runtime's only thread"
        );
        let saved = load_checkpoint(&path).expect("the final checkpoint");
        assert_eq!(saved.position, second);
    }

    /// `stop` returns only once its checkpoint is written, and waits for it without holding
    /// the thread it was awaited on.
    #[tokio::test]
    async fn stop_waits_for_its_checkpoint_without_blocking_the_thread() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(&dir);
        let path = dir.path().join("projections.json");
        let gate = Gate::new();
        // No checkpoint falls due while the test runs: the one written is `stop`'s.
        let checkpoint = gated(path.clone(), &gate, Duration::from_secs(3600));
        let runner = ProjectionRunner::start_with(Arc::clone(&store), Some(checkpoint))
            .await
            .expect("start");
        let position = append(&store).await;
        runner.wait_for(position).await;

        let runner = Arc::new(runner);
        let stopping = tokio::spawn({
            let runner = Arc::clone(&runner);
            async move { runner.stop().await }
        });
        tokio::time::timeout(LIMIT * 2, gate.arrival())
            .await
            .expect("the final checkpoint is being written");
        tokio::task::yield_now().await;
        assert!(
            !stopping.is_finished(),
            "stop returned before its checkpoint was written"
        );
        gate.open();
        tokio::time::timeout(LIMIT * 2, stopping)
            .await
            .expect("stop returns once the write is done")
            .expect("stop did not panic");

        assert!(
            !gate.timed_out(),
            "the final checkpoint blocked the runtime's only thread"
        );
        assert_eq!(load_checkpoint(&path).expect("written").position, position);
    }

    /// A checkpoint that cannot be written costs a longer catch-up later, nothing more.
    #[tokio::test]
    async fn a_failing_checkpoint_write_leaves_the_runner_following_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(&dir);
        let checkpoint = Checkpoint {
            path: dir.path().join("projections.json"),
            every: Duration::ZERO,
            write: Arc::new(|_, _| Err(std::io::Error::other("disk full"))),
        };
        let runner = ProjectionRunner::start_with(Arc::clone(&store), Some(checkpoint))
            .await
            .expect("start");
        append(&store).await;
        let second = append(&store).await;
        tokio::time::timeout(LIMIT * 2, runner.wait_for(second))
            .await
            .expect("the runner goes on after a failed write");
        tokio::time::timeout(LIMIT * 2, runner.stop())
            .await
            .expect("stop returns after a failed write");
        assert_eq!(runner.read().position, second);
    }
}
