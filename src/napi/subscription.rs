//! The async iterator returned by `subscribe()`.

use std::future::Future;
use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::consume::subscribe::Subscription as EngineSubscription;
use crate::napi::convert::{bus_event, BusEvent};
use crate::signal::Signal;

/// Events from `subscribe()`, for `for await`. Breaking out of the loop releases it;
/// `shutdown()` ends it.
#[napi(async_iterator)]
pub struct Subscription {
  inner: Arc<tokio::sync::Mutex<EngineSubscription>>,
  stop: Arc<Signal>,
}

impl Subscription {
  pub fn new(sub: EngineSubscription) -> Self {
    let stop = sub.stop_handle();
    Subscription {
      inner: Arc::new(tokio::sync::Mutex::new(sub)),
      stop,
    }
  }
}

impl Drop for Subscription {
  fn drop(&mut self) {
    self.stop.fire();
  }
}

#[napi]
impl AsyncGenerator for Subscription {
  type Yield = BusEvent;
  type Next = ();
  type Return = ();

  fn next(
    &mut self,
    _value: Option<()>,
  ) -> impl Future<Output = Result<Option<BusEvent>>> + Send + 'static {
    let inner = self.inner.clone();
    async move {
      let mut sub = inner.lock().await;
      match sub.next().await {
        Ok(ev) => Ok(ev.map(bus_event)),
        Err(e) => Err(Error::new(
          Status::GenericFailure,
          format!("{}: {}", e.code, e.message),
        )),
      }
    }
  }

  fn complete(
    &mut self,
    _value: Option<()>,
  ) -> impl Future<Output = Result<Option<BusEvent>>> + Send + 'static {
    self.stop.fire();
    async { Ok(None) }
  }
}
