//! The handle registry. A handle given to C is not an address but an id:
//! `(serial << 4) | type tag`, never reused. Every function looks the id up
//! in its type's table, so a freed, doubly freed, forged or wrongly typed
//! handle is an error (`GRPC_CORE_ERROR_INVALID_HANDLE`), never a dangling
//! dereference. Objects are `Arc`s: a thread freeing a handle while another
//! uses it is safe; the object lives until its last user is done.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::boundary::{FfiError, FfiResult, GRPC_CORE_ERROR_INVALID_HANDLE};

static SERIAL: AtomicUsize = AtomicUsize::new(1);

/// The type tags (low 4 bits of a handle).
pub(crate) mod tag {
    pub(crate) const CQ: usize = 1;
    pub(crate) const BUFFER: usize = 2;
    pub(crate) const METADATA: usize = 3;
    pub(crate) const STATUS: usize = 4;
    pub(crate) const CHANNEL_OPTIONS: usize = 5;
    pub(crate) const CHANNEL: usize = 6;
    pub(crate) const CALL: usize = 7;
    pub(crate) const SERVER_OPTIONS: usize = 8;
    pub(crate) const SERVER: usize = 9;
    pub(crate) const SERVER_CALL: usize = 10;
    pub(crate) const CALL_CREDENTIALS: usize = 11;
    pub(crate) const CREDENTIALS_REQUEST: usize = 12;
    pub(crate) const TELEMETRY: usize = 13;
}

/// One table of live objects of type `T`, handed to C as `*mut H`.
pub(crate) struct Registry<T, H> {
    tag: usize,
    name: &'static str,
    map: Mutex<Option<HashMap<usize, Arc<T>>>>,
    _h: PhantomData<fn() -> H>,
}

impl<T, H> Registry<T, H> {
    pub(crate) const fn new(tag: usize, name: &'static str) -> Registry<T, H> {
        Registry { tag, name, map: Mutex::new(None), _h: PhantomData }
    }

    fn lock(&self) -> MutexGuard<'_, Option<HashMap<usize, Arc<T>>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers an object and returns its new handle.
    pub(crate) fn insert(&self, v: Arc<T>) -> *mut H {
        let id = (SERIAL.fetch_add(1, Ordering::Relaxed) << 4) | self.tag;
        self.lock().get_or_insert_with(HashMap::new).insert(id, v);
        id as *mut H
    }

    fn check(&self, h: *const H) -> FfiResult<usize> {
        if h.is_null() {
            return Err(FfiError::null(self.name));
        }
        let id = h as usize;
        if id & 0xf != self.tag {
            return Err(FfiError::new(
                GRPC_CORE_ERROR_INVALID_HANDLE,
                format!("{} is not a {} handle", self.name, self.name),
            ));
        }
        Ok(id)
    }

    fn gone(&self) -> FfiError {
        FfiError::new(
            GRPC_CORE_ERROR_INVALID_HANDLE,
            format!("{} handle is not live (already freed, or never created)", self.name),
        )
    }

    /// The object behind a handle.
    pub(crate) fn get(&self, h: *const H) -> FfiResult<Arc<T>> {
        let id = self.check(h)?;
        self.lock().as_ref().and_then(|m| m.get(&id).cloned()).ok_or_else(|| self.gone())
    }

    /// Unregisters a handle (the free functions); the object is dropped when
    /// its last user is done.
    pub(crate) fn remove(&self, h: *const H) -> FfiResult<Arc<T>> {
        let id = self.check(h)?;
        self.lock().as_mut().and_then(|m| m.remove(&id)).ok_or_else(|| self.gone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct A;
    struct B;

    #[test]
    fn handles_are_typed_and_never_reused() {
        static AS: Registry<u32, A> = Registry::new(tag::CQ, "a");
        static BS: Registry<u32, B> = Registry::new(tag::CHANNEL, "b");
        let a = AS.insert(Arc::new(1));
        let b = BS.insert(Arc::new(2));
        assert_eq!(*AS.get(a).unwrap(), 1);
        // The same id read as the other type is not a live object of that type.
        assert_eq!(BS.get(a.cast::<B>()).unwrap_err().code_for_test(), GRPC_CORE_ERROR_INVALID_HANDLE);
        assert!(AS.remove(a).is_ok());
        assert_eq!(AS.remove(a).unwrap_err().code_for_test(), GRPC_CORE_ERROR_INVALID_HANDLE);
        let a2 = AS.insert(Arc::new(3));
        assert_ne!(a, a2, "ids are never reused, so a stale handle never aliases a new object");
        assert!(AS.get(std::ptr::null()).is_err());
        assert!(BS.remove(b).is_ok());
        assert!(AS.remove(a2).is_ok());
    }
}
