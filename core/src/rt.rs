//! The one tokio runtime every part of the engine (and every binding) runs on:
//! created lazily on first use as the process default, configurable before.

use std::future::Future;
use std::sync::OnceLock;

use tokio::runtime::{Handle, Runtime};
use tokio::task::JoinHandle;

use crate::error::{Error, ErrorKind};

enum Rt {
    Owned(Runtime),
    Adopted(Handle),
}

static RUNTIME: OnceLock<Rt> = OnceLock::new();

/// Runtime settings.
#[derive(Clone, Debug, Default)]
pub struct RuntimeConfig {
    /// Worker threads; `None` means one per CPU core.
    pub worker_threads: Option<usize>,
}

fn build(config: &RuntimeConfig) -> Runtime {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.enable_all().thread_name("grpc-core");
    if let Some(n) = config.worker_threads {
        b.worker_threads(n.max(1));
    }
    b.build().expect("failed to start the grpc-core tokio runtime")
}

/// Configures the process runtime. Fails with `WrongState` once it exists.
pub fn configure(config: RuntimeConfig) -> Result<(), Error> {
    let mut fresh = false;
    RUNTIME.get_or_init(|| {
        fresh = true;
        Rt::Owned(build(&config))
    });
    if fresh {
        Ok(())
    } else {
        Err(Error::new(ErrorKind::WrongState, "the runtime is already running; configure it before first use"))
    }
}

/// Makes an existing tokio runtime (e.g. a Rust program's own `#[tokio::main]`)
/// the engine's runtime, so there is one runtime in the process. Fails with
/// `WrongState` once a runtime exists.
pub fn adopt(handle: Handle) -> Result<(), Error> {
    let mut fresh = false;
    RUNTIME.get_or_init(|| {
        fresh = true;
        Rt::Adopted(handle)
    });
    if fresh {
        Ok(())
    } else {
        Err(Error::new(ErrorKind::WrongState, "the runtime is already running"))
    }
}

/// The runtime's handle, creating the default runtime on first use.
pub fn handle() -> &'static Handle {
    match RUNTIME.get_or_init(|| Rt::Owned(build(&RuntimeConfig::default()))) {
        Rt::Owned(rt) => rt.handle(),
        Rt::Adopted(h) => h,
    }
}

/// Spawns a task on the engine's runtime.
pub fn spawn<F>(fut: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    handle().spawn(fut)
}

/// Runs a future to completion from a thread that is not a runtime worker
/// (for bindings and blocking wrappers).
pub fn block_on<F>(fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().expect("the runtime dropped a blocking task")
}

/// Waits until a boolean watch becomes true (or its sender is gone).
pub(crate) async fn wait_true(rx: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}
