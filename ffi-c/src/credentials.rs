//! Call credentials from C: a callback that supplies metadata for each
//! call (an OAuth token source, a request signer...), or a fixed access
//! token. Set on channel options (every call of the channel) or on one call
//! (`grpc_core_call_set_credentials`, `grpc_core_channel_unary_ex`): the
//! core composes the two, runs them for every call attempt and refuses
//! them on plaintext unless the channel opts in.
//!
//! The callback is handed a completion handle (`grpc_core_credentials_request`)
//! that it, or any thread later, completes exactly once with metadata or an
//! error status: the call waits for it (bounded by its deadline) without
//! holding a thread.

use std::ffi::{c_char, c_void};
use std::sync::{Arc, Mutex};

use engine::surface::{AuthMetadataContext, CallCredentials, Code, Metadata, Status};
use tokio::sync::oneshot;

use crate::boundary::{ffi_guard, grpc_core_result, str_arg, FfiError, Out};
use crate::handle::{tag, Registry};
use crate::values::{code_arg, grpc_core_metadata_entry, metadata_arg};

/// Call credentials: a metadata source for every call of the channels they
/// are set on, or for the one call they are given to. Immutable and
/// thread-safe; free with `grpc_core_call_credentials_free` (channels,
/// options and calls that use them keep their own reference).
#[derive(Debug)]
pub struct grpc_core_call_credentials {
    _private: [u8; 0],
}

/// One pending request for metadata, handed to a credentials callback.
/// Complete it exactly once with `grpc_core_credentials_request_complete`,
/// from any thread, now or later; that also frees it.
#[derive(Debug)]
pub struct grpc_core_credentials_request {
    _private: [u8; 0],
}

/// What a credentials callback is told about the call. Every pointer is
/// borrowed for the duration of the callback only (copy what you keep);
/// strings are UTF-8, not NUL-terminated.
#[repr(C)]
#[derive(Debug)]
pub struct grpc_core_auth_metadata_context {
    /// `https://<authority>/<package.Service>` (gRPC's service URL, the
    /// audience of a JWT).
    pub service_url: *const c_char,
    /// Length of `service_url`.
    pub service_url_len: usize,
    /// The method's short name (`SayHello`).
    pub method_name: *const c_char,
    /// Length of `method_name`.
    pub method_name_len: usize,
    /// The full method path (`/package.Service/Method`).
    pub method: *const c_char,
    /// Length of `method`.
    pub method_len: usize,
    /// The call's `:authority`.
    pub authority: *const c_char,
    /// Length of `authority`.
    pub authority_len: usize,
}

/// A credentials callback. Called on a library thread for every call
/// attempt, possibly on several threads at once (so `user_data` must be
/// safe to share). It must not block for long and must not call
/// `grpc_core_channel_unary_blocking`; it completes `request` (now, or
/// later from any thread) with `grpc_core_credentials_request_complete`.
pub type grpc_core_call_credentials_fn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        context: *const grpc_core_auth_metadata_context,
        request: *mut grpc_core_credentials_request,
    ),
>;

/// Releases `user_data` once the library holds no more references to it.
pub type grpc_core_destroy_fn = Option<unsafe extern "C" fn(user_data: *mut c_void)>;

pub(crate) static CREDENTIALS: Registry<CallCredentials, grpc_core_call_credentials> =
    Registry::new(tag::CALL_CREDENTIALS, "call_credentials");

pub(crate) struct RequestObj {
    tx: Mutex<Option<oneshot::Sender<Result<Metadata, Status>>>>,
}

static REQUESTS: Registry<RequestObj, grpc_core_credentials_request> =
    Registry::new(tag::CREDENTIALS_REQUEST, "credentials_request");

/// The C callback and its user data; `destroy` runs when the last clone of
/// the credentials is dropped.
struct Callback {
    f: unsafe extern "C" fn(*mut c_void, *const grpc_core_auth_metadata_context, *mut grpc_core_credentials_request),
    user_data: usize,
    destroy: grpc_core_destroy_fn,
}

impl Callback {
    fn request(&self, ctx: &AuthMetadataContext) -> oneshot::Receiver<Result<Metadata, Status>> {
        let (tx, rx) = oneshot::channel();
        let req = REQUESTS.insert(Arc::new(RequestObj { tx: Mutex::new(Some(tx)) }));
        let c = grpc_core_auth_metadata_context {
            service_url: ctx.service_url.as_ptr().cast(),
            service_url_len: ctx.service_url.len(),
            method_name: ctx.method_name.as_ptr().cast(),
            method_name_len: ctx.method_name.len(),
            method: ctx.method.as_ptr().cast(),
            method_len: ctx.method.len(),
            authority: ctx.authority.as_ptr().cast(),
            authority_len: ctx.authority.len(),
        };
        // SAFETY: the C caller of grpc_core_call_credentials_new_callback
        // promised a function callable from any thread with its user_data;
        // `c` and its strings live until the callback returns.
        unsafe { (self.f)(self.user_data as *mut c_void, &c, req) };
        rx
    }
}

impl Drop for Callback {
    fn drop(&mut self) {
        if let Some(d) = self.destroy {
            // SAFETY: as for `f`; called once, when nothing can call `f` again.
            unsafe { d(self.user_data as *mut c_void) };
        }
    }
}

/// Creates call credentials from a C callback. `callback` is required;
/// `user_data` is passed to it as given; `destroy` (may be NULL) is called
/// once with `user_data` when the library no longer needs it (the handle
/// freed and every channel, options object and call using the credentials
/// gone),
/// on whichever thread drops the last reference. On success `*creds` is
/// owned by the caller: free with `grpc_core_call_credentials_free`. On
/// failure `destroy` is not called.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_call_credentials_new_callback(
    callback: grpc_core_call_credentials_fn,
    user_data: *mut c_void,
    destroy: grpc_core_destroy_fn,
    creds: *mut *mut grpc_core_call_credentials,
) -> grpc_core_result {
    ffi_guard! {
        let f = callback.ok_or_else(|| FfiError::null("callback"))?;
        let out = Out::new(creds, "creds")?;
        let cb = Arc::new(Callback { f, user_data: user_data as usize, destroy });
        let c = CallCredentials::from_fn(move |ctx: &AuthMetadataContext| {
            let rx = cb.request(ctx);
            async move {
                rx.await.unwrap_or_else(|_| Err(Status::internal("the credentials request was never completed")))
            }
        });
        out.write(CREDENTIALS.insert(Arc::new(c)));
        Ok(())
    }
}

/// Creates call credentials that send `authorization: Bearer <token>`
/// (`token`, `token_len` bytes, borrowed and copied; printable ASCII) with
/// every call. Owned by the caller: free with `grpc_core_call_credentials_free`.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_call_credentials_new_access_token(
    token: *const c_char,
    token_len: usize,
    creds: *mut *mut grpc_core_call_credentials,
) -> grpc_core_result {
    ffi_guard! {
        if token.is_null() {
            return Err(FfiError::null("token"));
        }
        let t = str_arg(token, token_len, "token")?;
        let out = Out::new(creds, "creds")?;
        let c = CallCredentials::access_token(t)?;
        out.write(CREDENTIALS.insert(Arc::new(c)));
        Ok(())
    }
}

/// Creates credentials that apply `first`'s metadata, then `second`'s
/// (both borrowed; they stay the caller's). Owned by the caller.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_call_credentials_compose(
    first: *const grpc_core_call_credentials,
    second: *const grpc_core_call_credentials,
    creds: *mut *mut grpc_core_call_credentials,
) -> grpc_core_result {
    ffi_guard! {
        let (a, b) = (CREDENTIALS.get(first)?, CREDENTIALS.get(second)?);
        let out = Out::new(creds, "creds")?;
        out.write(CREDENTIALS.insert(Arc::new(a.compose(&b))));
        Ok(())
    }
}

/// Frees the handle. Channels, options and calls the credentials were set
/// on keep using them. Freeing twice is detected.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_call_credentials_free(creds: *mut grpc_core_call_credentials) -> grpc_core_result {
    ffi_guard! {
        CREDENTIALS.remove(creds)?;
        Ok(())
    }
}

/// Completes a credentials request, exactly once, from any thread. With
/// `code` 0 (OK) the call goes ahead with `metadata` added (borrowed,
/// copied; may be NULL if `metadata_count` is 0); any other status code
/// ends the call with that code and `message` (UTF-8, borrowed; may be NULL
/// if 0) — except the codes gRFC A54 forbids to credentials
/// (INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION,
/// ABORTED, OUT_OF_RANGE, DATA_LOSS), which become INTERNAL. `request` is
/// freed on success; on an error (bad metadata, bad code) nothing changed
/// and it is still pending. If the call already ended, the result is
/// dropped and this still succeeds. A request never completed leaks and
/// leaves its call waiting until its deadline.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_credentials_request_complete(
    request: *mut grpc_core_credentials_request,
    metadata: *const grpc_core_metadata_entry,
    metadata_count: usize,
    code: i32,
    message: *const c_char,
    message_len: usize,
) -> grpc_core_result {
    ffi_guard! {
        REQUESTS.get(request)?;
        let code = code_arg(code)?;
        let result = if code == Code::Ok {
            Ok(metadata_arg(metadata, metadata_count)?)
        } else {
            Err(Status::new(code, str_arg(message, message_len, "message")?))
        };
        let r = REQUESTS.remove(request)?;
        let tx = r.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(tx) = tx {
            let _ = tx.send(result);
        }
        Ok(())
    }
}
