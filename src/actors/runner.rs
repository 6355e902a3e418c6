//! The projection runner: folds the log into the read models, live, and keeps a checkpoint
//! (the models with the position they reached) so a restart only folds what is new.
//!
//! Readers wanting to see their own write wait for the position their append returned
//! (`wait_for`), so an API answer never shows a state older than the command it answers.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use projections::{ReadModels, PROJECTIONS_VERSION};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::store::{EventStore, StoreError, Subscription};

/// Checkpoint at most this often while events flow, and whenever the runner stops.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(5);

pub struct ProjectionRunner {
    models: Arc<RwLock<ReadModels>>,
    position: watch::Receiver<u64>,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
    stop: watch::Sender<bool>,
    checkpoint: Option<PathBuf>,
}

impl ProjectionRunner {
    /// Loads the checkpoint (if any, and of this build's projection version), catches up
    /// with the log, then follows it live.
    pub async fn start(
        store: Arc<dyn EventStore>,
        checkpoint: Option<PathBuf>,
    ) -> Result<ProjectionRunner, StoreError> {
        let mut models = checkpoint
            .as_deref()
            .and_then(load_checkpoint)
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
        let mut subscription = Subscription::new(Arc::clone(&store), models.position);
        subscription
            .drain_now_with(|event| apply(&mut models, &event))
            .await?;
        let (position_tx, position) = watch::channel(models.position);
        let models = Arc::new(RwLock::new(models));
        let (stop, mut stopped) = watch::channel(false);
        let shared = Arc::clone(&models);
        let path = checkpoint.clone();
        let task = tokio::spawn(async move {
            let mut last_saved = Instant::now();
            loop {
                let next = tokio::select! {
                    next = subscription.next() => next,
                    _ = stopped.changed() => break,
                };
                match next {
                    Ok(event) => {
                        let position = {
                            let mut m = shared.write().expect("read models poisoned");
                            apply(&mut m, &event);
                            m.position
                        };
                        position_tx.send_replace(position);
                        if last_saved.elapsed() >= CHECKPOINT_EVERY {
                            if let Some(p) = &path {
                                save_checkpoint_logged(p, &shared.read().expect("poisoned"));
                            }
                            last_saved = Instant::now();
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "projection runner cannot read the log; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        });
        Ok(ProjectionRunner {
            models,
            position,
            task: std::sync::Mutex::new(Some(task)),
            stop,
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

    /// Stops following the log and writes the checkpoint. The models stay readable; a
    /// second call does nothing more than write the checkpoint again.
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let task = self.task.lock().expect("poisoned").take();
        if let Some(task) = task {
            let _ = task.await;
        }
        if let Some(p) = &self.checkpoint {
            save_checkpoint_logged(p, &self.models.read().expect("poisoned"));
        }
    }
}

fn apply(models: &mut ReadModels, event: &events::RecordedEvent) {
    if let Err(e) = models.apply_recorded(event) {
        // An event this build cannot read: skipping keeps every other view live, and the
        // error names the event so the operator can upgrade or investigate.
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
    let tmp = path.with_extension("tmp");
    let bytes = serde_json::to_vec(models).map_err(std::io::Error::other)?;
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    // The rename is durable once the directory entry is.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// A checkpoint that cannot be written costs a longer catch-up at the next start, nothing
/// more: the runner logs it and goes on.
fn save_checkpoint_logged(path: &Path, models: &ReadModels) {
    if let Err(e) = save_checkpoint(path, models) {
        tracing::warn!(error = %e, path = %path.display(), "cannot write the projection checkpoint");
    }
}
