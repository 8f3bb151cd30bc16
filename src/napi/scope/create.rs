//! Creating JS values in a scope: primitives, buffers, arrays and objects.

use super::*;

impl<'s> Scope<'s> {
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

  /// A Float64Array holding a copy of `values`.
  pub fn float64_array(&self, values: &[f64]) -> Result<JsValue<'s>, BusError> {
    let bytes = std::mem::size_of_val(values);
    let mut data = ptr::null_mut();
    let mut buffer = ptr::null_mut();
    // SAFETY: live env; valid out-pointers.
    let status = unsafe { sys::napi_create_arraybuffer(self.env, bytes, &mut data, &mut buffer) };
    self.check(status, "ArrayBuffer")?;
    if bytes > 0 {
      // SAFETY: `data` is the new buffer's memory, `bytes` long, not aliased by `values`;
      // a fresh ArrayBuffer's memory is aligned for any element type.
      unsafe { ptr::copy_nonoverlapping(values.as_ptr(), data.cast::<f64>(), values.len()) };
    }
    let mut out = ptr::null_mut();
    // SAFETY: live env; `buffer` belongs to this scope; a valid out-pointer.
    let status = unsafe {
      sys::napi_create_typedarray(
        self.env,
        sys::TypedarrayType::float64_array,
        values.len(),
        buffer,
        0,
        &mut out,
      )
    };
    self.check(status, "Float64Array")?;
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
}
