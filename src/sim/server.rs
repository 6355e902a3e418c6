//! Running a simulator: its HTTP server on a bound listener and its background task (block
//! producer, payment watcher), stopped together.

use std::net::TcpListener;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpServer};
use tokio::task::JoinHandle;

/// A started simulator. Dropping it stops the task and the server (without waiting).
pub(crate) struct Running {
    server: ServerHandle,
    task: Option<JoinHandle<()>>,
}

impl Running {
    /// Serves `configure`'s routes on `listener` with one worker (simulators are light),
    /// inside the current Tokio runtime.
    pub fn start<F>(listener: TcpListener, configure: F) -> std::io::Result<Running>
    where
        F: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
    {
        let server = HttpServer::new(move || App::new().configure(configure.clone()))
            .workers(1)
            .disable_signals()
            .listen(listener)?
            .run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(Running {
            server: handle,
            task: None,
        })
    }

    /// Attaches the background task stopped with the server.
    pub fn with_task(mut self, task: Option<JoinHandle<()>>) -> Running {
        self.task = task;
        self
    }

    /// Stops the task and waits for the server to finish its requests.
    pub async fn stop(mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        self.server.stop(true).await;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        // Stop accepting connections; the future completes on its own.
        let stop = self.server.stop(false);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(stop);
        }
    }
}
