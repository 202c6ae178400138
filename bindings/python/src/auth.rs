//! Call credentials over the engine's [`CallCredentials`]: grpcio's
//! `metadata_call_credentials` plugins run from the engine's provider future.
//!
//! A plugin call is `invoke(service_url, method_name, callback)` (a Python
//! function in `grpc_core._auth` that builds grpcio's context, calls the
//! plugin and turns its exception into `callback(None, error)`). It runs on a
//! blocking thread of the runtime that takes the GIL only for the call; the
//! provider future then waits, without the GIL, for the [`PluginCallback`]
//! that the plugin may call from any thread, at once or later.

use std::sync::{Arc, Mutex};

use grpc_core::surface::{AuthMetadataContext, CallCredentials, Code, Metadata, Status};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use tokio::sync::oneshot;

use super::{md_from_py, with_python};

type Reply = Result<Metadata, Status>;

/// Call credentials: a plugin, an access token, or several composed.
#[pyclass(frozen, module = "grpc_core._native")]
#[derive(Clone, Debug)]
pub(crate) struct NativeCallCredentials {
    pub(crate) creds: CallCredentials,
}

fn plugin_failed(what: impl std::fmt::Display) -> Status {
    // grpcio's wording and code for a plugin that raised or reported an error.
    Status::new(Code::Unavailable, format!("Getting metadata from plugin failed with error: {what}"))
}

#[pymethods]
impl NativeCallCredentials {
    /// Credentials whose metadata `invoke(service_url, method_name, callback)` makes.
    #[staticmethod]
    fn plugin(invoke: Py<PyAny>) -> Self {
        let invoke = Arc::new(invoke);
        let creds = CallCredentials::from_fn(move |ctx: &AuthMetadataContext| {
            let invoke = invoke.clone();
            let (url, name) = (ctx.service_url.clone(), ctx.method_name.clone());
            async move {
                let (tx, rx) = oneshot::channel::<Reply>();
                let cb = PluginCallback { tx: Mutex::new(Some(tx)) };
                let called = tokio::task::spawn_blocking(move || {
                    with_python(|py| -> PyResult<()> {
                        let cb = Py::new(py, cb)?;
                        invoke.call1(py, (url, name, cb))?;
                        Ok(())
                    })
                })
                .await;
                match called {
                    Ok(Some(Ok(()))) => {}
                    Ok(Some(Err(e))) => return Err(plugin_failed(e)),
                    Ok(None) => return Err(Status::unavailable("the interpreter is exiting")),
                    Err(e) => return Err(plugin_failed(e)),
                }
                rx.await.unwrap_or_else(|_| Err(plugin_failed("the plugin dropped its callback")))
            }
        });
        NativeCallCredentials { creds }
    }

    /// `authorization: Bearer <token>`, made by the engine.
    #[staticmethod]
    fn access_token(token: &str) -> PyResult<Self> {
        let creds = CallCredentials::access_token(token).map_err(|e| PyValueError::new_err(e.message().to_string()))?;
        Ok(NativeCallCredentials { creds })
    }

    /// These credentials' metadata, then `other`'s.
    fn compose(&self, other: &NativeCallCredentials) -> Self {
        NativeCallCredentials { creds: self.creds.compose(&other.creds) }
    }
}

/// The callback a plugin gets: `callback(metadata, error)`, once, from any thread.
#[pyclass(frozen, module = "grpc_core._native")]
#[derive(Debug)]
pub(crate) struct PluginCallback {
    tx: Mutex<Option<oneshot::Sender<Reply>>>,
}

#[pymethods]
impl PluginCallback {
    #[pyo3(signature = (metadata, error=None))]
    fn __call__(&self, metadata: Option<&Bound<'_, PyAny>>, error: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let reply = match error {
            Some(e) if !e.is_none() => Err(plugin_failed(e.str().map(|s| s.to_string()).unwrap_or_default())),
            _ => md_from_py(metadata).map_err(|_| Status::unavailable("Illegal metadata")),
        };
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        match tx {
            Some(tx) => {
                let _ = tx.send(reply);
                Ok(())
            }
            None => Err(PyValueError::new_err("the callback was already called")),
        }
    }
}
