//! The control plane: a runtime of its own, on a thread of its own, for what must answer
//! whatever the simulation does: the HTTP endpoints, the signals and the progress log.
//!
//! The shoppers run on the simulation's runtime and may keep it busy for as long as they have
//! work: at `--speed max` a single shopper never has to wait for anyone. Nothing an operator
//! relies on (a liveness probe, SIGTERM, the progress line) shares that runtime.
//!
//! Signals: SIGINT, SIGTERM, SIGHUP and SIGQUIT end the run the same way, with every event
//! written out, the state saved and the summary logged; SIGUSR1 logs a progress line at once.
//! They are listened for from [`ControlPlane::listen_for_signals`] on, so one that arrives
//! while the run is still starting (waiting for a Kafka cluster) ends it cleanly too.

use std::future::Future;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How long the control plane's tasks get to finish once it stops.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// A single-threaded runtime on a thread named `control`; it stops when dropped.
#[derive(Debug)]
pub struct ControlPlane {
    handle: Handle,
    stop: CancellationToken,
    thread: Option<JoinHandle<()>>,
    /// Notified by SIGUSR1: log progress now.
    report: Arc<Notify>,
}

impl ControlPlane {
    /// Starts the thread and its runtime.
    pub fn start() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let stop = CancellationToken::new();
        let until = stop.clone();
        let thread = std::thread::Builder::new()
            .name("control".into())
            .spawn(move || {
                runtime.block_on(until.cancelled());
                runtime.shutdown_timeout(STOP_GRACE);
            })?;
        Ok(Self {
            handle,
            stop,
            thread: Some(thread),
            report: Arc::new(Notify::new()),
        })
    }

    /// The runtime's handle, to spawn on it or to bind sockets to its I/O driver.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Runs `task` on the control plane.
    pub fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(task)
    }

    /// Notified whenever an operator asks for a progress report (SIGUSR1).
    pub fn report_requests(&self) -> Arc<Notify> {
        Arc::clone(&self.report)
    }

    /// Listens for the signals from now on: the first of SIGINT, SIGTERM, SIGHUP or SIGQUIT
    /// cancels `shutdown` (a second one changes nothing: the run is already finishing); SIGUSR1
    /// asks for a progress report. A signal that cannot be listened for is logged and left to
    /// its default action.
    pub fn listen_for_signals(&self, shutdown: CancellationToken) {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            // Registered here and now, in the runtime's context, so that no signal sent after
            // this returns falls to its default action.
            let _context = self.handle.enter();
            let mut stops = Vec::new();
            for (kind, name) in [
                (SignalKind::interrupt(), "SIGINT"),
                (SignalKind::terminate(), "SIGTERM"),
                (SignalKind::hangup(), "SIGHUP"),
                (SignalKind::quit(), "SIGQUIT"),
            ] {
                match signal(kind) {
                    Ok(stream) => stops.push((stream, name)),
                    Err(e) => {
                        tracing::warn!(error = %e, signal = name, "cannot listen for the signal")
                    }
                }
            }
            self.spawn(async move {
                if stops.is_empty() {
                    return;
                }
                loop {
                    let received = first_of(&mut stops).await;
                    if shutdown.is_cancelled() {
                        tracing::info!("{received} received; the run is already finishing");
                    } else {
                        tracing::info!("{received} received; finishing");
                        shutdown.cancel();
                    }
                }
            });
            match signal(SignalKind::user_defined1()) {
                Ok(mut reports) => {
                    let report = Arc::clone(&self.report);
                    self.spawn(async move {
                        while reports.recv().await.is_some() {
                            report.notify_one();
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, signal = "SIGUSR1", "cannot listen for the signal")
                }
            }
        }
        #[cfg(not(unix))]
        self.spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                tracing::info!("Ctrl-C received; finishing");
                shutdown.cancel();
            }
        });
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The name of the first of `streams` to deliver a signal.
#[cfg(unix)]
async fn first_of(streams: &mut [(tokio::signal::unix::Signal, &'static str)]) -> &'static str {
    std::future::poll_fn(|cx| {
        for (stream, name) in streams.iter_mut() {
            if stream.poll_recv(cx).is_ready() {
                return std::task::Poll::Ready(*name);
            }
        }
        std::task::Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_tasks_while_another_runtime_is_kept_busy() {
        let control = ControlPlane::start().unwrap();
        let busy = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let answered = busy.block_on(async {
            // This runtime never yields; the control plane still answers.
            let answer = control.spawn(async { 42 });
            let started = tokio::time::Instant::now();
            while !answer.is_finished() && started.elapsed() < Duration::from_secs(5) {
                std::hint::spin_loop();
            }
            answer.is_finished()
        });
        assert!(answered, "the control plane did not run its task");
        drop(control);
    }

    #[cfg(unix)]
    #[test]
    fn sigusr1_asks_for_a_report_and_leaves_the_run_going() {
        let control = ControlPlane::start().unwrap();
        let shutdown = CancellationToken::new();
        control.listen_for_signals(shutdown.clone());
        let reports = control.report_requests();
        let (tx, rx) = std::sync::mpsc::channel();
        control.spawn(async move {
            reports.notified().await;
            let _ = tx.send(());
        });
        let sent = std::process::Command::new("kill")
            .args(["-USR1", &std::process::id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        assert!(rx.recv_timeout(Duration::from_secs(5)).is_ok());
        assert!(!shutdown.is_cancelled());
    }
}
