//! The raw Node-API calls of the hot paths, behind a scope that makes them safe to use.
//!
//! A [`Scope`] stands for one native call from JS: its `napi_env` is valid, and every
//! value the call receives or creates lives, until the call returns. [`Scope::with`] gives
//! the scope a lifetime of its own that no result can outlive, so a byte slice borrowed
//! from a JS `Uint8Array` (`&'s [u8]`) or a [`JsValue<'s>`] cannot be kept past the call:
//! the compiler checks it. Every `unsafe` block of the JS surface is here or at an entry
//! point that creates a scope.

mod calls;
mod create;

use std::cell::RefCell;
use std::ffi::CStr;
use std::marker::PhantomData;
use std::ptr;

use bytes::Bytes;
use napi::sys;

use crate::error::{BusError, Code};

/// Scratch capacity kept between calls; a larger one is freed after use.
const MAX_KEPT_SCRATCH: usize = 1 << 20;

thread_local! {
  /// Compiled scripts of this thread's environment: (env, source address, reference).
  static SCRIPTS: RefCell<Vec<(usize, usize, sys::napi_ref)>> = const { RefCell::new(Vec::new()) };
  /// Scratch for UTF-8 text copied out of JS strings, reused so a copy costs one exact-size
  /// allocation (the payload) instead of two.
  static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A JS value of the call that `'s` stands for. A null handle reads as `undefined`.
#[derive(Clone, Copy)]
pub struct JsValue<'s> {
  raw: sys::napi_value,
  _scope: PhantomData<&'s ()>,
}

impl JsValue<'_> {
  pub fn raw(self) -> sys::napi_value {
    self.raw
  }
}

/// One native call's environment. See the module docs.
///
/// Methods that can run JS (getters, `toJSON`, `toString`, a called function) take the
/// scope mutably; [`Scope::uint8_slice`] borrows it, so no JS that could detach or resize
/// an array's buffer runs while a slice of it is alive.
pub struct Scope<'s> {
  env: sys::napi_env,
  _call: PhantomData<&'s ()>,
}

/// A failed Node-API call: a bug or an exhausted engine, not the caller's input.
/// How a value of type `t` is named in messages ("a number", "null").
pub fn type_name(t: sys::napi_valuetype) -> &'static str {
  match t {
    sys::ValueType::napi_undefined => "undefined",
    sys::ValueType::napi_null => "null",
    sys::ValueType::napi_boolean => "a boolean",
    sys::ValueType::napi_number => "a number",
    sys::ValueType::napi_bigint => "a bigint",
    sys::ValueType::napi_symbol => "a symbol",
    sys::ValueType::napi_function => "a function",
    sys::ValueType::napi_string => "a string",
    _ => "an object",
  }
}

pub fn internal(what: &str, status: sys::napi_status) -> BusError {
  BusError::new(
    Code::Internal,
    format!("Node-API call failed ({what}, status {status}); please report this as a ringbus bug"),
  )
}

impl<'s> Scope<'s> {
  /// Runs `f` with the scope of the current native call.
  ///
  /// # Safety
  /// `env` must be the environment of a callback from Node (a native call from JS, or a
  /// finalizer) running on this thread, and `f` must run within that callback.
  pub unsafe fn with<R>(env: sys::napi_env, f: impl for<'a> FnOnce(&mut Scope<'a>) -> R) -> R {
    f(&mut Scope {
      env,
      _call: PhantomData,
    })
  }

  /// A value handed to this call (an argument, `this`, or a handle napi-rs created in it).
  ///
  /// # Safety
  /// `raw` must be null or a handle valid in this call's handle scope.
  pub unsafe fn adopt(&self, raw: sys::napi_value) -> JsValue<'s> {
    JsValue {
      raw,
      _scope: PhantomData,
    }
  }

  pub fn env(&self) -> sys::napi_env {
    self.env
  }

  pub(super) fn value(&self, raw: sys::napi_value) -> JsValue<'s> {
    JsValue {
      raw,
      _scope: PhantomData,
    }
  }

  /// Ok when `status` is `napi_ok`, else an `ERR_INTERNAL` naming `what`.
  pub fn check(&self, status: sys::napi_status, what: &str) -> Result<(), BusError> {
    if status == sys::Status::napi_ok {
      Ok(())
    } else {
      Err(internal(what, status))
    }
  }

  /// The value's type; `undefined` for a null handle.
  pub fn type_of(&self, v: JsValue<'s>) -> sys::napi_valuetype {
    let mut t = sys::ValueType::napi_undefined;
    if v.raw.is_null() {
      return t;
    }
    // SAFETY: the scope's env is live and `v` belongs to it (Scope invariant).
    if unsafe { sys::napi_typeof(self.env, v.raw, &mut t) } != sys::Status::napi_ok {
      return sys::ValueType::napi_undefined;
    }
    t
  }

  /// `object[name]`; the caller has checked that `object` is an object. A getter that
  /// throws is the caller's input, so `ERR_INVALID_EVENT` with its message.
  pub fn named(
    &mut self,
    object: JsValue<'s>,
    name: &CStr,
    what: &str,
  ) -> Result<JsValue<'s>, BusError> {
    let mut out = ptr::null_mut();
    // SAFETY: live env, a value of this scope, a NUL-terminated name, a valid out-pointer.
    let status =
      unsafe { sys::napi_get_named_property(self.env, object.raw, name.as_ptr(), &mut out) };
    self.read_status(status, what)?;
    Ok(self.value(out))
  }

  /// A property access's status: a thrown exception (a getter, a Proxy trap) is the
  /// input's fault, anything else ours. Node reports a throw as a generic failure with the
  /// exception pending.
  pub(super) fn read_status(
    &mut self,
    status: sys::napi_status,
    what: &str,
  ) -> Result<(), BusError> {
    if status == sys::Status::napi_ok {
      return Ok(());
    }
    if self.exception_pending() {
      let reason = self.take_exception();
      return Err(BusError::invalid_event(format!(
        "{what} could not be read: it threw ({reason})"
      )));
    }
    self.check(status, what)
  }

  /// The length of an array, or `ERR_INVALID_EVENT` naming `what` when `v` is not one.
  pub fn array_len(&self, v: JsValue<'s>, what: &str) -> Result<u32, BusError> {
    let mut is_array = false;
    if v.raw.is_null() {
      return Err(BusError::invalid_event(format!("{what} must be an array")));
    }
    // SAFETY: live env, a value of this scope, a valid out-pointer.
    let status = unsafe { sys::napi_is_array(self.env, v.raw, &mut is_array) };
    if status != sys::Status::napi_ok || !is_array {
      return Err(BusError::invalid_event(format!("{what} must be an array")));
    }
    let mut n = 0u32;
    // SAFETY: as above; `v` is an array.
    let status = unsafe { sys::napi_get_array_length(self.env, v.raw, &mut n) };
    self.check(status, what)?;
    Ok(n)
  }

  /// The names of an object's own enumerable string-keyed properties, as a JS array (a
  /// Proxy's `ownKeys` trap that throws is the caller's input).
  pub fn own_keys(&mut self, object: JsValue<'s>, what: &str) -> Result<JsValue<'s>, BusError> {
    let mut out = ptr::null_mut();
    // SAFETY: live env, a value of this scope (an object, checked by the caller), a valid
    // out-pointer.
    let status = unsafe {
      sys::napi_get_all_property_names(
        self.env,
        object.raw,
        sys::KeyCollectionMode::own_only,
        sys::KeyFilter::enumerable | sys::KeyFilter::skip_symbols,
        sys::KeyConversion::numbers_to_strings,
        &mut out,
      )
    };
    self.read_status(status, what)?;
    Ok(self.value(out))
  }

  /// `object[key]` for a key that is a JS value (e.g. from [`Scope::own_keys`]).
  pub fn property(
    &mut self,
    object: JsValue<'s>,
    key: JsValue<'s>,
    what: &str,
  ) -> Result<JsValue<'s>, BusError> {
    let mut out = ptr::null_mut();
    // SAFETY: live env, two values of this scope, a valid out-pointer.
    let status = unsafe { sys::napi_get_property(self.env, object.raw, key.raw, &mut out) };
    self.read_status(status, what)?;
    Ok(self.value(out))
  }

  /// `array[i]`; the caller has checked that `array` is an array.
  pub fn element(
    &mut self,
    array: JsValue<'s>,
    i: u32,
    what: &str,
  ) -> Result<JsValue<'s>, BusError> {
    let mut out = ptr::null_mut();
    // SAFETY: live env, a value of this scope, a valid out-pointer.
    let status = unsafe { sys::napi_get_element(self.env, array.raw, i, &mut out) };
    self.read_status(status, what)?;
    Ok(self.value(out))
  }

  /// The UTF-8 bytes of a JS string, in an allocation of exactly their size. `limit` sees
  /// the string's UTF-16 length first (its UTF-8 size is at least that), so a string far
  /// too large is refused before anything is copied.
  pub fn string_bytes(
    &self,
    v: JsValue<'s>,
    what: &str,
    limit: impl FnOnce(usize) -> Result<(), BusError>,
  ) -> Result<Bytes, BusError> {
    // The UTF-16 length is O(1); UTF-8 needs at most 3 bytes per UTF-16 unit, so one copy
    // into a large enough scratch replaces the usual measure-then-copy pair of O(n) calls.
    let mut units = 0usize;
    // SAFETY: live env, a value of this scope; a null buffer asks for the length only.
    let status =
      unsafe { sys::napi_get_value_string_utf16(self.env, v.raw, ptr::null_mut(), 0, &mut units) };
    self.check(status, what)?;
    limit(units)?;
    SCRATCH.with(|scratch| {
      let mut buf = scratch.borrow_mut();
      let cap = units * 3 + 1;
      if buf.capacity() < cap {
        buf.reserve(cap);
      }
      let mut written = 0usize;
      // SAFETY: the buffer has room for `cap` bytes; Node writes at most `cap - 1` and NUL.
      let status = unsafe {
        sys::napi_get_value_string_utf8(self.env, v.raw, buf.as_mut_ptr().cast(), cap, &mut written)
      };
      self.check(status, what)?;
      // SAFETY: Node initialised `written` (≤ cap - 1) bytes of the buffer's capacity.
      let text =
        Bytes::copy_from_slice(unsafe { std::slice::from_raw_parts(buf.as_ptr(), written) });
      if buf.capacity() > MAX_KEPT_SCRATCH {
        // One huge string must not pin its size for the life of the thread.
        *buf = Vec::new();
      }
      Ok(text)
    })
  }

  /// The bytes of a Uint8Array (or Buffer), or None when `value` is not one. The slice
  /// borrows the array's memory for this call only.
  pub fn uint8_slice(&self, value: JsValue<'s>) -> Option<&[u8]> {
    let mut is_typed = false;
    if value.raw.is_null() {
      return None;
    }
    // SAFETY: live env, a value of this scope, a valid out-pointer.
    let status = unsafe { sys::napi_is_typedarray(self.env, value.raw, &mut is_typed) };
    if status != sys::Status::napi_ok || !is_typed {
      return None;
    }
    let mut kind = 0;
    let mut len = 0usize;
    let mut data = ptr::null_mut();
    let mut buffer = ptr::null_mut();
    let mut offset = 0usize;
    // SAFETY: as above; `value` is a typed array.
    let status = unsafe {
      sys::napi_get_typedarray_info(
        self.env,
        value.raw,
        &mut kind,
        &mut len,
        &mut data,
        &mut buffer,
        &mut offset,
      )
    };
    if status != sys::Status::napi_ok || kind != sys::TypedarrayType::uint8_array {
      return None;
    }
    if len == 0 || data.is_null() {
      return Some(&[]);
    }
    // SAFETY: Node reports `len` bytes at `data`, owned by the array, which the call's
    // handle scope keeps alive. The slice borrows the scope, so no JS can run (and detach
    // or shrink the buffer) until it is dropped.
    Some(unsafe { std::slice::from_raw_parts(data as *const u8, len) })
  }

  /// Whether an object is a plain one (`{}` of any realm, or `Object.create(null)`), not
  /// an array, a Map or another class's instance.
  pub fn is_plain_object(&self, v: JsValue<'s>) -> bool {
    let mut is_array = false;
    // SAFETY: live env, a value of this scope, a valid out-pointer.
    if unsafe { sys::napi_is_array(self.env, v.raw, &mut is_array) } != sys::Status::napi_ok
      || is_array
    {
      return false;
    }
    let proto = |raw: sys::napi_value| {
      let mut out = ptr::null_mut();
      // SAFETY: live env, an object of this scope, a valid out-pointer.
      let ok = unsafe { sys::napi_get_prototype(self.env, raw, &mut out) } == sys::Status::napi_ok;
      ok.then(|| self.value(out))
    };
    match proto(v.raw) {
      Some(p) if self.type_of(p) == sys::ValueType::napi_null => true,
      Some(p) => proto(p.raw).is_some_and(|pp| self.type_of(pp) == sys::ValueType::napi_null),
      None => false,
    }
  }

  /// The value of a JS number; None for anything else.
  pub fn double(&self, v: JsValue<'s>) -> Option<f64> {
    if self.type_of(v) != sys::ValueType::napi_number {
      return None;
    }
    let mut out = 0f64;
    // SAFETY: live env, a number of this scope, a valid out-pointer.
    let status = unsafe { sys::napi_get_value_double(self.env, v.raw, &mut out) };
    (status == sys::Status::napi_ok).then_some(out)
  }

  /// The value of a JS boolean; None for anything else.
  pub fn boolean(&self, v: JsValue<'s>) -> Option<bool> {
    if self.type_of(v) != sys::ValueType::napi_boolean {
      return None;
    }
    let mut out = false;
    // SAFETY: live env, a boolean of this scope, a valid out-pointer.
    let status = unsafe { sys::napi_get_value_bool(self.env, v.raw, &mut out) };
    (status == sys::Status::napi_ok).then_some(out)
  }
}
