//! Values that cross the boundary: received messages (`grpc_core_buffer`),
//! metadata (`grpc_core_metadata_entry` in, `grpc_core_metadata` out) and
//! final statuses (`grpc_core_status`).

use std::ffi::c_char;

use bytes::Bytes;
use engine::surface::{Code, Metadata, MetadataValue, Status};

use crate::boundary::{
    bytes_arg, ffi_guard, grpc_core_result, str_arg, FfiError, FfiResult, Out, GRPC_CORE_NOT_FOUND, GRPC_CORE_OK,
};
use crate::handle::{tag, Registry};

/// A received message: an owned byte buffer.
#[derive(Debug)]
pub struct grpc_core_buffer {
    _private: [u8; 0],
}

/// Received metadata (initial, trailing, or a server call's request
/// metadata): an owned, immutable list of entries.
#[derive(Debug)]
pub struct grpc_core_metadata {
    _private: [u8; 0],
}

/// How an RPC ended: code, message, details (`grpc-status-details-bin`).
/// The trailing metadata come separately (see `GRPC_CORE_OP_CALL_RECV_STATUS`).
#[derive(Debug)]
pub struct grpc_core_status {
    _private: [u8; 0],
}

/// One metadata entry. As an input (arrays given to the library), every
/// pointer is borrowed for the duration of the call. As an output
/// (`grpc_core_metadata_get`), every pointer is borrowed from the
/// `grpc_core_metadata` and valid until that object is freed.
///
/// Keys are lower-case ASCII (`0-9 a-z _ . -`), not NUL-terminated. Keys
/// ending in `-bin` carry binary values (sent base64-encoded on the wire);
/// other values must be printable ASCII. Reserved keys (`grpc-*`,
/// `content-type`, `te`, pseudo-headers, ...) are rejected on input.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct grpc_core_metadata_entry {
    /// The key bytes (not NUL-terminated).
    pub key: *const c_char,
    /// The key length in bytes.
    pub key_len: usize,
    /// The value bytes.
    pub value: *const u8,
    /// The value length in bytes.
    pub value_len: usize,
}

pub(crate) static BUFFERS: Registry<Bytes, grpc_core_buffer> = Registry::new(tag::BUFFER, "buffer");
pub(crate) static METADATA: Registry<MetadataObj, grpc_core_metadata> = Registry::new(tag::METADATA, "metadata");
pub(crate) static STATUSES: Registry<Status, grpc_core_status> = Registry::new(tag::STATUS, "status");

/// Metadata flattened for indexed access.
pub(crate) struct MetadataObj {
    entries: Vec<(String, MetadataValue)>,
}

impl MetadataObj {
    pub(crate) fn new(md: &Metadata) -> MetadataObj {
        MetadataObj { entries: md.iter().map(|(k, v)| (k.to_string(), v.clone())).collect() }
    }
}

/// Reads a C array of metadata entries into [`Metadata`], validating every key and value.
///
/// # Safety
/// `entries` is NULL or points to `count` readable entries whose pointers
/// are valid as [`bytes_arg`] requires.
pub(crate) unsafe fn metadata_arg(entries: *const grpc_core_metadata_entry, count: usize) -> FfiResult<Metadata> {
    let mut md = Metadata::new();
    if count == 0 {
        return Ok(md);
    }
    if entries.is_null() {
        return Err(FfiError::null("metadata"));
    }
    if count > (isize::MAX as usize) / std::mem::size_of::<grpc_core_metadata_entry>() {
        return Err(FfiError::invalid("metadata count is too large"));
    }
    // SAFETY: non-NULL, count bounded; the caller promised `count` readable entries.
    let entries = unsafe { std::slice::from_raw_parts(entries, count) };
    for (i, e) in entries.iter().enumerate() {
        // SAFETY: the entry's pointers are valid as our caller promised.
        let (key, value) =
            unsafe { (str_arg(e.key, e.key_len, "metadata key")?, bytes_arg(e.value, e.value_len, "metadata value")?) };
        md.append_raw(key, value).map_err(|err| FfiError::invalid(format!("metadata entry {i}: {}", err.message())))?;
    }
    Ok(md)
}

/// Status codes from C: 0..=16; anything else is invalid.
pub(crate) fn code_arg(code: i32) -> FfiResult<Code> {
    if (0..=16).contains(&code) {
        Ok(Code::from_i32(code))
    } else {
        Err(FfiError::invalid(format!("status code {code} is not a gRPC status code (0..=16)")))
    }
}

/// Borrows the bytes of a received message. `*data` and `*len` are borrowed
/// from `buffer`: valid until `grpc_core_buffer_free(buffer)`. (The same
/// pointer and length are also in the event that delivered the buffer.)
#[no_mangle]
pub unsafe extern "C" fn grpc_core_buffer_data(
    buffer: *const grpc_core_buffer,
    data: *mut *const u8,
    len: *mut usize,
) -> grpc_core_result {
    ffi_guard! {
        let b = BUFFERS.get(buffer)?;
        let (data, len) = (Out::new(data, "data")?, Out::new(len, "len")?);
        data.write(b.as_ptr());
        len.write(b.len());
        Ok(())
    }
}

/// Frees a received message. Freeing twice is detected
/// (`GRPC_CORE_ERROR_INVALID_HANDLE`). NULL is an error.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_buffer_free(buffer: *mut grpc_core_buffer) -> grpc_core_result {
    ffi_guard! {
        BUFFERS.remove(buffer)?;
        Ok(())
    }
}

/// Writes the number of entries of `md` to `*count`.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_metadata_count(
    md: *const grpc_core_metadata,
    count: *mut usize,
) -> grpc_core_result {
    ffi_guard! {
        let m = METADATA.get(md)?;
        Out::new(count, "count")?.write(m.entries.len());
        Ok(())
    }
}

/// Writes entry `index` (0-based, in arrival order) of `md` to `*entry`.
/// The entry's pointers are borrowed from `md`: valid until
/// `grpc_core_metadata_free(md)`. `GRPC_CORE_ERROR_INVALID_ARGUMENT` if
/// `index` is out of range.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_metadata_get(
    md: *const grpc_core_metadata,
    index: usize,
    entry: *mut grpc_core_metadata_entry,
) -> grpc_core_result {
    ffi_guard! {
        let m = METADATA.get(md)?;
        let out = Out::new(entry, "entry")?;
        let (k, v) = m
            .entries
            .get(index)
            .ok_or_else(|| FfiError::invalid(format!("index {index} is out of range (count {})", m.entries.len())))?;
        let value = v.as_bytes();
        out.write(grpc_core_metadata_entry {
            key: k.as_ptr().cast(),
            key_len: k.len(),
            value: value.as_ptr(),
            value_len: value.len(),
        });
        Ok(())
    }
}

/// Finds the first value for `key` (`key_len` bytes, borrowed; compared
/// exactly, keys are lower-case). On `GRPC_CORE_OK`, `*value`/`*value_len`
/// are borrowed from `md` (valid until it is freed). Returns
/// `GRPC_CORE_NOT_FOUND` (out-parameters untouched) if there is none.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_metadata_find(
    md: *const grpc_core_metadata,
    key: *const c_char,
    key_len: usize,
    value: *mut *const u8,
    value_len: *mut usize,
) -> grpc_core_result {
    ffi_guard! {
        let m = METADATA.get(md)?;
        let key = str_arg(key, key_len, "key")?;
        let (value, value_len) = (Out::new(value, "value")?, Out::new(value_len, "value_len")?);
        match m.entries.iter().find(|(k, _)| k == key) {
            Some((_, v)) => {
                value.write(v.as_bytes().as_ptr());
                value_len.write(v.as_bytes().len());
                Ok(GRPC_CORE_OK)
            }
            None => Ok(GRPC_CORE_NOT_FOUND),
        }
    }
}

/// Frees received metadata. Freeing twice is detected.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_metadata_free(md: *mut grpc_core_metadata) -> grpc_core_result {
    ffi_guard! {
        METADATA.remove(md)?;
        Ok(())
    }
}

/// Writes the status code (`GRPC_CORE_STATUS_*`, 0..=16) to `*code`.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_status_code(status: *const grpc_core_status, code: *mut i32) -> grpc_core_result {
    ffi_guard! {
        let s = STATUSES.get(status)?;
        Out::new(code, "code")?.write(s.code().as_i32());
        Ok(())
    }
}

/// Borrows the status message (UTF-8, not NUL-terminated; may be empty):
/// valid until `grpc_core_status_free(status)`.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_status_message(
    status: *const grpc_core_status,
    message: *mut *const c_char,
    len: *mut usize,
) -> grpc_core_result {
    ffi_guard! {
        let s = STATUSES.get(status)?;
        let (message, len) = (Out::new(message, "message")?, Out::new(len, "len")?);
        message.write(s.message().as_ptr().cast());
        len.write(s.message().len());
        Ok(())
    }
}

/// Borrows the status details (`grpc-status-details-bin`, typically a
/// serialized `google.rpc.Status`; empty when absent): valid until
/// `grpc_core_status_free(status)`.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_status_details(
    status: *const grpc_core_status,
    details: *mut *const u8,
    len: *mut usize,
) -> grpc_core_result {
    ffi_guard! {
        let s = STATUSES.get(status)?;
        let (details, len) = (Out::new(details, "details")?, Out::new(len, "len")?);
        details.write(s.details().as_ptr());
        len.write(s.details().len());
        Ok(())
    }
}

/// Frees a status. Freeing twice is detected.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_status_free(status: *mut grpc_core_status) -> grpc_core_result {
    ffi_guard! {
        STATUSES.remove(status)?;
        Ok(())
    }
}
