//! The raw Node-API calls of the hot paths, behind a scope that makes them safe to use.
//!
//! A [`Scope`] stands for one native call from JS: its `napi_env` is valid, and every
//! value the call receives or creates lives, until the call returns. [`Scope::with`] gives
//! the scope a lifetime of its own that no result can outlive, so a byte slice borrowed
//! from a JS `Uint8Array` (`&'s [u8]`) or a [`JsValue<'s>`] cannot be kept past the call:
//! the compiler checks it. Every `unsafe` block of the JS surface is here or at an entry
//! point that creates a scope.

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

  fn value(&self, raw: sys::napi_value) -> JsValue<'s> {
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

  pub fn undefined(&self) -> Result<JsValue<'s>, BusError> {
    let mut out = ptr::null_mut();
    // SAFETY: the scope's env is live; `out` is a valid out-pointer.
    let status = unsafe { sys::napi_get_undefined(self.env, &mut out) };
    self.check(status, "undefined")?;
    Ok(self.value(out))
  }

  pub fn global(&self) -> Result<JsValue<'s>, BusError> {
    let mut out = ptr::null_mut();
    // SAFETY: the scope's env is live; `out` is a valid out-pointer.
    let status = unsafe { sys::napi_get_global(self.env, &mut out) };
    self.check(status, "globalThis")?;
    Ok(self.value(out))
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
  fn read_status(&mut self, status: sys::napi_status, what: &str) -> Result<(), BusError> {
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

  /// Calls the function `f` with `undefined` as `this`. Err(message) when it threw (the
  /// exception is cleared).
  pub fn call<const N: usize>(
    &mut self,
    f: JsValue<'s>,
    args: [JsValue<'s>; N],
  ) -> Result<JsValue<'s>, String> {
    let recv = self.undefined().map_err(|e| e.message)?;
    let raw = args.map(|a| a.raw);
    let mut out = ptr::null_mut();
    // SAFETY: live env; `recv`, `f` and the arguments are values of this scope.
    let status =
      unsafe { sys::napi_call_function(self.env, recv.raw, f.raw, N, raw.as_ptr(), &mut out) };
    if status != sys::Status::napi_ok {
      return Err(self.take_exception());
    }
    Ok(self.value(out))
  }

  /// `new ctor(...args)`; a throwing constructor's exception becomes the error.
  pub fn construct<const N: usize>(
    &mut self,
    ctor: JsValue<'s>,
    args: &[JsValue<'s>; N],
  ) -> Result<JsValue<'s>, BusError> {
    let raw = args.map(|a| a.raw);
    let mut out = ptr::null_mut();
    // SAFETY: live env; `ctor` and the arguments are values of this scope.
    let status = unsafe { sys::napi_new_instance(self.env, ctor.raw, N, raw.as_ptr(), &mut out) };
    if status != sys::Status::napi_ok {
      return Err(internal(&self.take_exception(), status));
    }
    Ok(self.value(out))
  }

  /// The value of the script `source` (each script here evaluates to a function). It is
  /// compiled once per environment and kept: compiling costs far more than a call.
  pub fn script(&mut self, source: &'static str) -> Result<JsValue<'s>, String> {
    let key = (self.env as usize, source.as_ptr() as usize);
    let kept = SCRIPTS.with(|s| s.borrow().iter().find(|e| (e.0, e.1) == key).map(|e| e.2));
    if let Some(r) = kept {
      // SAFETY: `r` was created in this environment below and is never deleted (it lives
      // as long as the environment, on this thread).
      return unsafe { self.reference_value(r) }.map_err(|e| e.message);
    }
    let text = self.string(source.as_bytes()).map_err(|e| e.message)?;
    let mut out = ptr::null_mut();
    // SAFETY: live env; `text` is a string of this scope; a valid out-pointer.
    if unsafe { sys::napi_run_script(self.env, text.raw, &mut out) } != sys::Status::napi_ok {
      return Err(self.take_exception());
    }
    let value = self.value(out);
    let r = self.create_reference(value).map_err(|e| e.message)?;
    SCRIPTS.with(|s| s.borrow_mut().push((key.0, key.1, r)));
    Ok(value)
  }

  /// A strong reference to `v`, so it outlives this call (released by `delete_reference`).
  pub fn create_reference(&self, v: JsValue<'s>) -> Result<sys::napi_ref, BusError> {
    let mut out = ptr::null_mut();
    // SAFETY: live env, a value of this scope, a valid out-pointer.
    let status = unsafe { sys::napi_create_reference(self.env, v.raw, 1, &mut out) };
    self.check(status, "reference")?;
    Ok(out)
  }

  /// The value a reference holds.
  ///
  /// # Safety
  /// `r` must come from [`Scope::create_reference`] in this environment and not be deleted.
  pub unsafe fn reference_value(&self, r: sys::napi_ref) -> Result<JsValue<'s>, BusError> {
    let mut out = ptr::null_mut();
    // SAFETY: live env; `r` is a live reference of this env (the caller's contract).
    let status = unsafe { sys::napi_get_reference_value(self.env, r, &mut out) };
    self.check(status, "reference")?;
    Ok(self.value(out))
  }

  /// Releases a reference.
  ///
  /// # Safety
  /// `r` must come from [`Scope::create_reference`] in this environment, and is not used
  /// again.
  pub unsafe fn delete_reference(&self, r: sys::napi_ref) {
    // SAFETY: live env; a live reference of this env (the caller's contract).
    unsafe { sys::napi_delete_reference(self.env, r) };
  }

  /// Defines `props` on `object` as own, writable, configurable and not enumerable data
  /// properties (like class methods). False when they could not be defined (a frozen
  /// object, say); no exception is left pending.
  pub fn define_hidden(
    &mut self,
    object: JsValue<'s>,
    props: &[(&'static CStr, JsValue<'s>)],
  ) -> bool {
    let descriptors: Vec<sys::napi_property_descriptor> = props
      .iter()
      .map(|(name, value)| sys::napi_property_descriptor {
        utf8name: name.as_ptr(),
        name: ptr::null_mut(),
        method: None,
        getter: None,
        setter: None,
        value: value.raw,
        attributes: sys::PropertyAttributes::writable | sys::PropertyAttributes::configurable,
        data: ptr::null_mut(),
      })
      .collect();
    // SAFETY: live env; the descriptors name static C strings and values of this scope.
    let status = unsafe {
      sys::napi_define_properties(
        self.env,
        object.raw,
        descriptors.len(),
        descriptors.as_ptr(),
      )
    };
    if status != sys::Status::napi_ok {
      self.clear_exception();
      return false;
    }
    true
  }

  /// The message of the pending JS exception, which is cleared.
  pub fn take_exception(&mut self) -> String {
    let mut exc = ptr::null_mut();
    // SAFETY: live env, a valid out-pointer.
    let status = unsafe { sys::napi_get_and_clear_last_exception(self.env, &mut exc) };
    if status != sys::Status::napi_ok || exc.is_null() {
      return "unknown error".into();
    }
    let exc = self.value(exc);
    // Reading a property of a non-object would throw again.
    let message = if self.type_of(exc) == sys::ValueType::napi_object {
      self.named(exc, c"message", "message").ok()
    } else {
      None
    };
    let message = message.filter(|m| self.type_of(*m) == sys::ValueType::napi_string);
    let text = match message {
      Some(m) => m,
      None => {
        let mut s = ptr::null_mut();
        // SAFETY: live env, a value of this scope, a valid out-pointer.
        if unsafe { sys::napi_coerce_to_string(self.env, exc.raw, &mut s) } != sys::Status::napi_ok
        {
          return "unknown error".into();
        }
        self.value(s)
      }
    };
    self
      .string_bytes(text, "exception", |_| Ok(()))
      .map(|b| String::from_utf8_lossy(&b).into_owned())
      .unwrap_or_else(|_| "unknown error".into())
  }

  fn exception_pending(&self) -> bool {
    let mut pending = false;
    // SAFETY: live env, a valid out-pointer.
    let status = unsafe { sys::napi_is_exception_pending(self.env, &mut pending) };
    status == sys::Status::napi_ok && pending
  }

  /// Clears a pending exception, if any.
  pub fn clear_exception(&mut self) {
    if self.exception_pending() {
      let _ = self.take_exception();
    }
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

  /// A JS string from UTF-8 bytes; V8 replaces invalid sequences.
  pub fn string(&self, bytes: &[u8]) -> Result<JsValue<'s>, BusError> {
    let mut out = ptr::null_mut();
    // SAFETY: live env; `bytes` is readable for its length.
    let status = unsafe {
      sys::napi_create_string_utf8(
        self.env,
        bytes.as_ptr().cast(),
        bytes.len() as isize,
        &mut out,
      )
    };
    self.check(status, "string")?;
    Ok(self.value(out))
  }

  pub fn number(&self, v: f64) -> Result<JsValue<'s>, BusError> {
    let mut out = ptr::null_mut();
    // SAFETY: live env, a valid out-pointer.
    let status = unsafe { sys::napi_create_double(self.env, v, &mut out) };
    self.check(status, "number")?;
    Ok(self.value(out))
  }

  pub fn uint32(&self, v: u32) -> Result<JsValue<'s>, BusError> {
    let mut out = ptr::null_mut();
    // SAFETY: live env, a valid out-pointer.
    let status = unsafe { sys::napi_create_uint32(self.env, v, &mut out) };
    self.check(status, "number")?;
    Ok(self.value(out))
  }

  /// A Buffer holding a copy of `bytes`.
  pub fn buffer_copy(&self, bytes: &[u8]) -> Result<JsValue<'s>, BusError> {
    let mut data = ptr::null_mut();
    let mut out = ptr::null_mut();
    // SAFETY: live env; `bytes` is readable for its length; valid out-pointers.
    let status = unsafe {
      sys::napi_create_buffer_copy(
        self.env,
        bytes.len(),
        bytes.as_ptr().cast(),
        &mut data,
        &mut out,
      )
    };
    self.check(status, "Buffer")?;
    Ok(self.value(out))
  }

  pub fn array(&self, len: usize) -> Result<JsValue<'s>, BusError> {
    let mut out = ptr::null_mut();
    // SAFETY: live env, a valid out-pointer.
    let status = unsafe { sys::napi_create_array_with_length(self.env, len, &mut out) };
    self.check(status, "array")?;
    Ok(self.value(out))
  }

  pub fn set_element(&self, array: JsValue<'s>, i: u32, v: JsValue<'s>) -> Result<(), BusError> {
    // SAFETY: live env; both values belong to this scope.
    let status = unsafe { sys::napi_set_element(self.env, array.raw, i, v.raw) };
    self.check(status, "array element")
  }

  /// `object[key] = value` (any key, symbols included).
  pub fn set_property(
    &mut self,
    object: JsValue<'s>,
    key: JsValue<'s>,
    value: JsValue<'s>,
  ) -> Result<(), BusError> {
    // SAFETY: live env; the three values belong to this scope.
    let status = unsafe { sys::napi_set_property(self.env, object.raw, key.raw, value.raw) };
    self.read_status(status, "property")
  }

  /// A plain object with `props` as own, enumerable, writable data properties, defined in
  /// one call. Each name is a JS string of this scope (made once per page: naming
  /// properties with C strings makes V8 look each name up again for every object).
  pub fn object_with<const N: usize>(
    &self,
    props: &[(JsValue<'s>, JsValue<'s>)],
  ) -> Result<JsValue<'s>, BusError> {
    // On the stack: this runs once per event read back.
    let mut descriptors: [sys::napi_property_descriptor; N] =
      std::array::from_fn(|_| sys::napi_property_descriptor {
        utf8name: ptr::null(),
        name: ptr::null_mut(),
        method: None,
        getter: None,
        setter: None,
        value: ptr::null_mut(),
        attributes: sys::PropertyAttributes::writable
          | sys::PropertyAttributes::enumerable
          | sys::PropertyAttributes::configurable,
        data: ptr::null_mut(),
      });
    if props.len() > N {
      return Err(internal(
        "too many properties",
        sys::Status::napi_invalid_arg,
      ));
    }
    for (d, (name, value)) in descriptors.iter_mut().zip(props) {
      d.name = name.raw;
      d.value = value.raw;
    }
    let mut obj = ptr::null_mut();
    // SAFETY: live env, a valid out-pointer.
    let status = unsafe { sys::napi_create_object(self.env, &mut obj) };
    self.check(status, "object")?;
    // SAFETY: live env; the descriptors name values of this scope and live for the call.
    let status =
      unsafe { sys::napi_define_properties(self.env, obj, props.len(), descriptors.as_ptr()) };
    self.check(status, "object properties")?;
    Ok(self.value(obj))
  }

  /// Throws `e` as a JS error with `code` set. Returns the null handle a callback that
  /// threw returns.
  pub fn throw(&self, e: &BusError) -> sys::napi_value {
    let code = self.string(e.code.as_str().as_bytes());
    let msg = self.string(e.message.as_bytes());
    if let (Ok(code), Ok(msg)) = (code, msg) {
      let mut err = ptr::null_mut();
      // SAFETY: live env; both strings belong to this scope; a valid out-pointer.
      if unsafe { sys::napi_create_error(self.env, code.raw, msg.raw, &mut err) }
        == sys::Status::napi_ok
      {
        // SAFETY: live env; `err` was just created in this scope.
        unsafe { sys::napi_throw(self.env, err) };
      }
    }
    ptr::null_mut()
  }
}
