//! The `grpc.health.v1.Health` service (Check and Watch), with a reporter
//! that sets each service's status. `""` is the whole server (SERVING).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::server::{Handler, MethodKind, ServerCall};
use crate::status::{Code, Status};
use crate::typed::{encode, recv_one};

/// `grpc.health.v1.HealthCheckRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HealthCheckRequest {
    /// The service name; empty for the server as a whole.
    #[prost(string, tag = "1")]
    pub service: String,
}

/// `grpc.health.v1.HealthCheckResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HealthCheckResponse {
    /// A [`ServingStatus`] value.
    #[prost(enumeration = "ServingStatus", tag = "1")]
    pub status: i32,
}

/// `grpc.health.v1.HealthCheckResponse.ServingStatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ServingStatus {
    /// Unknown.
    Unknown = 0,
    /// Serving.
    Serving = 1,
    /// Not serving.
    NotServing = 2,
    /// Only for Watch: the service is not known.
    ServiceUnknown = 3,
}

/// Sets the health of services; shared by the Check and Watch handlers.
#[derive(Clone, Debug)]
pub struct HealthReporter {
    services: Arc<Mutex<HashMap<String, watch::Sender<ServingStatus>>>>,
}

impl HealthReporter {
    pub(crate) fn new() -> HealthReporter {
        let r = HealthReporter { services: Arc::default() };
        r.set("", ServingStatus::Serving);
        r
    }

    fn sender(&self, service: &str) -> watch::Sender<ServingStatus> {
        let mut m = self.services.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(service.to_string()).or_insert_with(|| watch::channel(ServingStatus::ServiceUnknown).0).clone()
    }

    /// Sets a service's status; watchers see the change.
    pub fn set(&self, service: &str, status: ServingStatus) {
        self.sender(service).send_replace(status);
    }

    /// The status of a service, `None` if it was never set.
    pub fn get(&self, service: &str) -> Option<ServingStatus> {
        let m = self.services.lock().unwrap_or_else(|e| e.into_inner());
        m.get(service).map(|s| *s.borrow()).filter(|s| *s != ServingStatus::ServiceUnknown)
    }

    /// Marks every service NOT_SERVING (on server shutdown, as grpc-go does).
    pub(crate) fn shutdown(&self) {
        let m = self.services.lock().unwrap_or_else(|e| e.into_inner());
        for s in m.values() {
            if *s.borrow() != ServingStatus::ServiceUnknown {
                s.send_replace(ServingStatus::NotServing);
            }
        }
    }
}

pub(crate) fn handlers(r: &HealthReporter) -> Vec<(&'static str, MethodKind, Arc<dyn Handler>)> {
    let check = r.clone();
    let watch_r = r.clone();
    vec![
        (
            "/grpc.health.v1.Health/Check",
            MethodKind::Unary,
            Arc::new(move |mut call: ServerCall| {
                let r = check.clone();
                async move {
                    let req: HealthCheckRequest = match recv_one(&mut call).await {
                        Ok(r) => r,
                        Err(s) => return s,
                    };
                    match r.get(&req.service) {
                        Some(st) => match call.send(encode(&HealthCheckResponse { status: st as i32 })).await {
                            Ok(()) => Status::ok(),
                            Err(s) => s,
                        },
                        None => Status::new(Code::NotFound, "unknown service"),
                    }
                }
            }) as Arc<dyn Handler>,
        ),
        (
            "/grpc.health.v1.Health/Watch",
            MethodKind::ServerStreaming,
            Arc::new(move |mut call: ServerCall| {
                let r = watch_r.clone();
                async move {
                    let req: HealthCheckRequest = match recv_one(&mut call).await {
                        Ok(r) => r,
                        Err(s) => return s,
                    };
                    let mut rx = r.sender(&req.service).subscribe();
                    let mut last = None;
                    loop {
                        let st = *rx.borrow_and_update();
                        if last != Some(st) {
                            last = Some(st);
                            if let Err(s) = call.send(encode(&HealthCheckResponse { status: st as i32 })).await {
                                return s;
                            }
                        }
                        if rx.changed().await.is_err() {
                            return Status::ok();
                        }
                    }
                }
            }) as Arc<dyn Handler>,
        ),
    ]
}
