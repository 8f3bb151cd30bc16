//! Reading the arguments of `EventBus` methods: option objects (checked in JS, then
//! parsed strictly), group names, letter ids, and the requests built from them.

use super::*;

/// Reads a user's option object as JSON text (undefined/null: None). What
/// `JSON.stringify` cannot serialise (cycles, BigInt, a throwing getter) is `code`.
pub(super) fn options_json(
  env: &Env,
  value: Option<Unknown>,
  what: &str,
  code: Code,
) -> std::result::Result<Option<String>, BusError> {
  let Some(value) = value else { return Ok(None) };
  match value.get_type() {
    Ok(ValueType::Undefined) | Ok(ValueType::Null) => return Ok(None),
    Ok(ValueType::Object) => {}
    _ => return Err(BusError::new(code, format!("{what} must be an object"))),
  }
  let run = |scope: &mut Scope<'_>| {
    // SAFETY: napi-rs handed `value` to this running call.
    let value = unsafe { scope.adopt(value.raw()) };
    let read = scope
      .script(READ_JS)
      .map_err(|reason| BusError::new(Code::Internal, format!("reading {what}: {reason}")))?;
    let name = scope.string(what.as_bytes())?;
    let out = scope
      .call(read, [value, name])
      .map_err(|reason| BusError::new(code, format!("{what} cannot be read ({reason})")))?;
    match scope.type_of(out) {
      napi::sys::ValueType::napi_string => {
        let bytes = scope.string_bytes(out, what, |_| Ok(()))?;
        Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
      }
      napi::sys::ValueType::napi_object => Err(refusal(scope, out, what, code)?),
      _ => Ok(None),
    }
  };
  // SAFETY: called from napi-rs methods, on the JS thread, within the call of `env`.
  unsafe { Scope::with(env.raw(), run) }
}

/// Reads an option object of `what` into `T` (absent: `T::default()`).
pub(super) fn read_options<T: serde::de::DeserializeOwned + Default>(
  env: &Env,
  value: Option<Unknown>,
  what: &str,
) -> std::result::Result<T, BusError> {
  match options_json(env, value, what, Code::InvalidConfig)? {
    Some(text) => options::parse_json(&text, what, Code::InvalidConfig),
    None => Ok(T::default()),
  }
}

/// `JSON.stringify` of an option object, after refusing what it would silently change:
/// non-finite numbers (they become null, so an option falls back to its default), and
/// inside `filter` undefined values, functions, symbols and `toJSON` objects other than
/// Dates (dropped, so a filter would match every event). Dates are told by their tag:
/// Jest's sandbox has its own `Date`. Returns the JSON text, or `[path, problem,
/// inFilter]`. Option objects are small; the walk is cheap.
const READ_JS: &str = include_str!("../js/read.js");

/// The error for what [`READ_JS`] found: `ERR_INVALID_FILTER` inside a filter, else `code`.
pub(super) fn refusal<'s>(
  scope: &mut Scope<'s>,
  found: napi_scope::JsValue<'s>,
  what: &str,
  code: Code,
) -> std::result::Result<BusError, BusError> {
  let mut text = |i: u32| -> std::result::Result<String, BusError> {
    let v = scope.element(found, i, what)?;
    let b = scope.string_bytes(v, what, |_| Ok(()))?;
    Ok(String::from_utf8_lossy(&b).into_owned())
  };
  let (path, problem) = (text(0)?, text(1)?);
  let in_filter = scope.element(found, 2, what)?;
  let code = if scope.boolean(in_filter) == Some(true) {
    Code::InvalidFilter
  } else {
    code
  };
  Ok(BusError::new(code, format!("{path} {problem}")))
}

pub(super) fn parse_options(
  env: &Env,
  value: Option<Unknown>,
) -> std::result::Result<(BusConfig, AdapterConfig), BusError> {
  if let Some(e) = crate::napi::threads_error() {
    return Err(e);
  }
  match options_json(env, value, "options", Code::InvalidConfig)? {
    None => Ok((BusConfig::default(), AdapterConfig::default())),
    Some(json) => {
      let opts: EventBusOptions = options::parse_json(&json, "options", Code::InvalidConfig)?;
      opts.into_config()
    }
  }
}

/// A group name argument: a string (its format is checked by the engine).
pub(super) fn group_arg(group: &Unknown<'_>, what: &str) -> std::result::Result<String, BusError> {
  match group.get_type() {
    // SAFETY: the type was checked by the match.
    Ok(ValueType::String) => unsafe { group.cast::<String>() }
      .map_err(|_| BusError::config(format!("{what}: group must be a string"))),
    _ => Err(BusError::config(format!("{what}: group must be a string"))),
  }
}

/// A dead letter's id, from a letter object or the id itself.
pub(super) fn letter_id(env: &Env, v: &Unknown<'_>) -> std::result::Result<String, BusError> {
  let bad = || {
    BusError::config("redeliver() takes dead letters from deadLetters() or their letterId strings")
  };
  match v.get_type() {
    // SAFETY: the type was checked by the match.
    Ok(ValueType::String) => unsafe { v.cast::<String>() }.map_err(|_| bad()),
    Ok(ValueType::Object) => {
      let read = |scope: &mut Scope<'_>| {
        // SAFETY: napi-rs handed `v` to this running call.
        let obj = unsafe { scope.adopt(v.raw()) };
        // A getter or Proxy trap that throws is reported, and its exception cleared.
        let id = scope
          .named(obj, c"letterId", "a dead letter's letterId")
          .map_err(|e| BusError::config(e.message))?;
        if scope.type_of(id) != napi::sys::ValueType::napi_string {
          return Err(bad());
        }
        let bytes = scope.string_bytes(id, "letterId", |_| Ok(()))?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
      };
      // SAFETY: called from a napi-rs method, on the JS thread, within the call of `env`.
      unsafe { Scope::with(env.raw(), read) }
    }
    _ => Err(bad()),
  }
}

impl EventBus {
  pub(super) fn consumer_options(
    &self,
    env: &Env,
    options: Unknown<'_>,
  ) -> std::result::Result<GroupOptions, BusError> {
    let json = options_json(env, Some(options), "consumer options", Code::InvalidConfig)?
      .ok_or_else(|| {
        BusError::config("consumer options must be an object with at least a group")
      })?;
    let opts: options::ConsumerOptions =
      options::parse_json(&json, "consumer options", Code::InvalidConfig)?;
    opts.into_group()
  }

  /// `ingest`/`ingestBatch` through the class: binds the fast functions, then runs `call`.
  pub(super) fn first_call(
    &self,
    env: &Env,
    this: This,
    call: ingest::Call,
    events: Unknown,
    options: Option<Unknown>,
  ) -> Result<u32, Code> {
    let options = options.map_or(std::ptr::null_mut(), |o| o.raw());
    let run = |scope: &mut Scope<'_>| {
      // SAFETY: napi-rs handed these values to this running method call.
      let (this, events, options) = unsafe {
        (
          scope.adopt(this.raw()),
          scope.adopt(events.raw()),
          scope.adopt(options),
        )
      };
      if self.unbound.load(std::sync::atomic::Ordering::Relaxed) {
        return ingest::unbound_call(scope, &self.bus, call, events, options);
      }
      let (result, bound) = ingest::first_call(scope, this, &self.bus, call, events, options);
      if !bound {
        self
          .unbound
          .store(true, std::sync::atomic::Ordering::Relaxed);
      }
      result
    };
    // SAFETY: napi-rs runs this method on the JS thread within the call `env` belongs to.
    unsafe { Scope::with(env.raw(), run) }.map_err(throw)
  }

  /// Binds the fast `ingest` functions on `this` now (telemetry.js wraps them).
  pub(super) fn bind_now(&self, env: &Env, this: This) -> Result<bool, Code> {
    let run = |scope: &mut Scope<'_>| {
      // SAFETY: napi-rs handed `this` to this running method call.
      let this = unsafe { scope.adopt(this.raw()) };
      let bound = ingest::bind(scope, this, &self.bus)?;
      if !bound {
        self
          .unbound
          .store(true, std::sync::atomic::Ordering::Relaxed);
      }
      Ok(bound)
    };
    // SAFETY: napi-rs runs this method on the JS thread within the call `env` belongs to.
    unsafe { Scope::with(env.raw(), run) }.map_err(throw)
  }

  pub(super) fn poll_request(
    &self,
    env: &Env,
    request: Option<Unknown>,
  ) -> std::result::Result<(poll::PollRequest, Option<StartAt>), BusError> {
    let json = options_json(env, request, "poll request", Code::InvalidConfig)?;
    let Some(json) = json else {
      let req = poll::PollRequest {
        limit: poll::DEFAULT_LIMIT,
        ..Default::default()
      };
      return Ok((req, None));
    };
    let req: options::PollRequest =
      options::parse_json(&json, "poll request", Code::InvalidConfig)?;
    let ordering = PageOrder::parse(req.ordering.as_deref())?;
    let scope = self.bus.cursor_scope();
    let from = match (&req.from, &req.cursor) {
      (Some(_), Some(_)) => {
        return Err(BusError::config(
          "poll request: give cursor (to continue) or from (to start), not both",
        ))
      }
      (Some(f), None) => Some(StartAt::parse(Some(f), &scope, "poll request.from")?),
      (None, _) => None,
    };
    let req = poll::PollRequest {
      limit: poll::check_limit(req.limit)?,
      cursor: req
        .cursor
        .map(|c| Cursor::decode(&c, &self.bus.cursor_scope()))
        .transpose()?,
      filter: req.filter.as_ref().map(Filter::parse).transpose()?,
      ordering,
      shards: req.shards,
      cache: None,
    };
    Ok((req, from))
  }
}
