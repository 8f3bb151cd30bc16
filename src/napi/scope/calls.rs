//! Running JS from a scope: calls, constructors, compiled scripts, references kept
//! across calls, hidden properties, and the exceptions they leave.

use super::*;

impl<'s> Scope<'s> {
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

  pub(super) fn exception_pending(&self) -> bool {
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
