//! Client-side health checking (gRFC A17): a `grpc.health.v1.Health/Watch`
//! stream on a subchannel's connection. The subchannel is READY for picking
//! only while the backend reports SERVING. A server without the health
//! service (UNIMPLEMENTED) counts as healthy, as A17 says. A failed stream is
//! retried with backoff (at once if it had delivered a response).

use bytes::Bytes;
use http::{HeaderValue, Method, Request};
use tokio::sync::watch;

use super::conn::Backoff;
use super::subchannel::ConnCtx;
use crate::codec::{encode_frame, Decoder};
use crate::health::{HealthCheckRequest, HealthCheckResponse, ServingStatus};
use crate::status::{Code, Status};
use crate::wire::{status_from_headers, CONTENT_TYPE};

const WATCH: &str = "/grpc.health.v1.Health/Watch";

/// The health of one connection as the Watch stream tells it.
#[derive(Clone, Debug)]
pub(crate) enum Health {
    /// No answer yet (the subchannel reports CONNECTING).
    Pending,
    /// SERVING (or the server has no health service).
    Serving,
    /// Anything else: the subchannel reports TRANSIENT_FAILURE with this.
    Unhealthy(Status),
}

enum End {
    /// The connection is gone: stop.
    Gone,
    /// UNIMPLEMENTED: the server has no health service.
    Unimplemented,
    /// The stream ended; `got_response` if it had delivered a response.
    Failed { status: Status, got_response: bool },
}

/// Watches `service` on the connection until it is gone, publishing to `tx`.
pub(crate) async fn run(
    send: h2::client::SendRequest<Bytes>,
    ctx: std::sync::Arc<ConnCtx>,
    service: String,
    tx: watch::Sender<Health>,
) {
    let mut backoff = Backoff::new(&ctx.opts.backoff);
    loop {
        match one_stream(send.clone(), &ctx, &service, &tx).await {
            End::Gone => return,
            End::Unimplemented => {
                tracing::error!(
                    "health checking is configured but the server does not implement grpc.health.v1.Health; \
                     treating the backend as healthy"
                );
                tx.send_replace(Health::Serving);
                return;
            }
            End::Failed { status, got_response } => {
                tracing::debug!(%status, "health-check stream failed");
                tx.send_replace(Health::Unhealthy(Status::unavailable(format!(
                    "health-check stream failed: {}",
                    status.message()
                ))));
                if got_response {
                    backoff = Backoff::new(&ctx.opts.backoff);
                } else {
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
    }
}

async fn one_stream(
    send: h2::client::SendRequest<Bytes>,
    ctx: &ConnCtx,
    service: &str,
    tx: &watch::Sender<Health>,
) -> End {
    let Ok(mut send) = send.ready().await else { return End::Gone };
    let uri = http::Uri::builder()
        .scheme(ctx.scheme.clone())
        .authority(ctx.authority.clone())
        .path_and_query(WATCH)
        .build()
        .expect("valid health-check URI");
    let mut req = Request::builder().method(Method::POST).uri(uri).body(()).expect("valid request");
    {
        let h = req.headers_mut();
        h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        h.insert(http::header::TE, HeaderValue::from_static("trailers"));
        h.insert(http::header::USER_AGENT, ctx.user_agent.clone());
    }
    let (resp, mut stream) = match send.send_request(req, false) {
        Ok(p) => p,
        Err(_) => return End::Gone,
    };
    let msg = crate::typed::encode(&HealthCheckRequest { service: service.to_string() });
    let frame = encode_frame(&msg, None, usize::MAX).expect("small message");
    // A server without the health service may answer (trailers-only
    // UNIMPLEMENTED) and close the stream before the request is queued; the
    // send then fails with "inactive stream" and the answer is in the
    // response, so a failed send only counts when there is no response.
    let sent = stream.send_data(frame, true);
    let resp = match resp.await {
        Ok(r) => r,
        Err(e) => {
            let e = sent.err().unwrap_or(e);
            return End::Failed { status: Status::from_h2(&e), got_response: false };
        }
    };
    let (parts, mut body) = resp.into_parts();
    if body.is_end_stream() {
        let st = status_from_headers(&parts.headers).unwrap_or_else(|| Status::internal("no grpc-status"));
        return match st.code() {
            Code::Unimplemented => End::Unimplemented,
            _ => End::Failed { status: st, got_response: false },
        };
    }
    let mut decoder = Decoder::new(ctx.opts.max_recv_message_size, None);
    let mut got_response = false;
    loop {
        match body.data().await {
            Some(Ok(chunk)) => {
                let _ = body.flow_control().release_capacity(chunk.len());
                decoder.push(chunk);
                loop {
                    match decoder.next() {
                        Ok(Some(m)) => {
                            got_response = true;
                            let r: Result<HealthCheckResponse, _> = crate::typed::decode(&m.data);
                            let h = match r.map(|r| ServingStatus::try_from(r.status)) {
                                Ok(Ok(ServingStatus::Serving)) => Health::Serving,
                                Ok(Ok(s)) => Health::Unhealthy(Status::unavailable(format!(
                                    "health check: backend reports {}",
                                    match s {
                                        ServingStatus::NotServing => "NOT_SERVING",
                                        ServingStatus::ServiceUnknown => "SERVICE_UNKNOWN",
                                        _ => "UNKNOWN",
                                    }
                                ))),
                                _ => Health::Unhealthy(Status::unavailable("health check: bad response")),
                            };
                            tx.send_replace(h);
                        }
                        Ok(None) => break,
                        Err(st) => return End::Failed { status: st, got_response },
                    }
                }
            }
            Some(Err(e)) => return End::Failed { status: Status::from_h2(&e), got_response },
            None => break,
        }
    }
    let st = match body.trailers().await {
        Ok(Some(t)) => status_from_headers(&t).unwrap_or_else(|| Status::internal("no grpc-status")),
        Ok(None) => Status::internal("health-check stream ended without trailers"),
        Err(e) => Status::from_h2(&e),
    };
    if st.code() == Code::Unimplemented && !got_response {
        return End::Unimplemented;
    }
    End::Failed { status: st, got_response }
}
