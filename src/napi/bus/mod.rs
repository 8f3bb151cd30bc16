//! The `EventBus` class.

use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::adapter::{Adapter, AdapterConfig};
use crate::bus::Bus;
use crate::config::BusConfig;
use crate::consume::cursor::Cursor;
use crate::consume::filter::Filter;
use crate::consume::poll::{self, PageOrder};
use crate::consume::subscribe::StartAt;
use crate::error::{BusError, Code};
use crate::group::GroupOptions;
use crate::napi::consumer::Consumer;
use crate::napi::convert::DeadLetterPage;
use crate::napi::convert::{self, BusInfo, BusStats, FlushResult, PollResult, ShardStat};
use crate::napi::errors::{spawn, throw};
use crate::napi::ingest;
use crate::napi::options::{self, DeadLettersOptions, EventBusOptions};
use crate::napi::scope::{self as napi_scope, Scope};
use crate::napi::subscription::Subscription;
use crate::napi::worker::Worker;

mod admin;
mod args;
mod telemetry;

use self::args::*;

/// An event bus: synchronous sharded ingest, batched delivery to the adapter, and
/// `poll`/`subscribe` to read events back.
///
/// @typeParam T - The events' type (default `unknown`): what `ingest` takes as an object and
/// what `ev.json()` returns on read. TypeScript only; nothing is checked at run time.
#[napi]
pub struct EventBus {
  bus: Bus,
  /// The bound `ingest` functions could not be defined on this object (it is frozen):
  /// calls stay on the class methods and must not try again each time.
  unbound: std::sync::atomic::AtomicBool,
}

impl EventBus {
  fn start(
    env: &Env,
    config: BusConfig,
    adapter: std::sync::Arc<dyn Adapter>,
  ) -> std::result::Result<EventBus, BusError> {
    let bus = Bus::start_with_adapter(config, adapter, crate::napi::runtime())?;
    // At process or worker exit, drain what a forgotten bus still holds (bounded).
    crate::napi::teardown::track(env, &bus)
      .map_err(|e| BusError::config(format!("could not register the exit drain: {}", e.reason)))?;
    Ok(EventBus {
      bus,
      unbound: Default::default(),
    })
  }
}

impl Drop for EventBus {
  fn drop(&mut self) {
    // Garbage collected without shutdown: stop the workers instead of leaking them.
    self.bus.shutdown_in_background();
  }
}

#[napi]
impl EventBus {
  /// Creates a bus with an in-process adapter (`memory`, the default, or `noop`).
  /// Network adapters connect asynchronously: use `EventBus.create()` for them.
  /// Throws `ERR_INVALID_CONFIG` naming the offending option.
  #[napi(constructor)]
  pub fn new(
    env: Env,
    #[napi(ts_arg_type = "EventBusOptions")] options: Option<Unknown>,
  ) -> Result<Self, Code> {
    let (config, adapter) = parse_options(&env, options).map_err(throw)?;
    let adapter = crate::adapter::build_local(&adapter).map_err(throw)?;
    Self::start(&env, config, adapter).map_err(throw)
  }

  /// Validates the options, connects the adapter and starts the workers.
  /// Rejects with `ERR_INVALID_CONFIG` or `ERR_CONNECT`.
  #[napi(
    ts_generic_types = "T = unknown",
    ts_return_type = "Promise<EventBus<T>>"
  )]
  pub fn create<'env>(
    env: &'env Env,
    #[napi(ts_arg_type = "EventBusOptions")] options: Option<Unknown>,
  ) -> Result<PromiseRaw<'env, EventBus>> {
    let config = parse_options(env, options);
    spawn(
      env,
      async move {
        let (config, adapter) = config?;
        let adapter = crate::adapter::connect(&adapter).await?;
        Ok((config, adapter))
      },
      |env, (config, adapter)| Self::start(env, config, adapter),
    )
  }

  /// Accepts one event and returns the id of the shard it went to. `event` is an object
  /// (serialised with JSON.stringify), a JSON string (validated) or a Buffer/Uint8Array
  /// (stored byte-exact). Never waits on I/O. Throws `ERR_INVALID_EVENT`,
  /// `ERR_BACKPRESSURE` (backpressure `'reject'` and the shard is full) or `ERR_SHUT_DOWN`.
  #[napi(
    ts_args_type = "event: T | string | Uint8Array, options?: IngestOptions | undefined | null"
  )]
  pub fn ingest(
    &self,
    env: Env,
    this: This,
    event: Unknown,
    options: Option<Unknown>,
  ) -> Result<u32, Code> {
    self.first_call(&env, this, ingest::INGEST, event, options)
  }

  /// Accepts many events in one native call and returns how many were accepted. If any
  /// event is invalid, none is accepted (`ERR_INVALID_EVENT` names its index). Under
  /// backpressure `'reject'` it stops at the first full shard: `events.slice(returned)`
  /// were not accepted (`ERR_BACKPRESSURE` when that is all of them).
  #[napi(
    ts_args_type = "events: Array<T | string | Uint8Array>, options?: IngestOptions | undefined | null"
  )]
  pub fn ingest_batch(
    &self,
    env: Env,
    this: This,
    events: Unknown,
    options: Option<Unknown>,
  ) -> Result<u32, Code> {
    self.first_call(&env, this, ingest::INGEST_BATCH, events, options)
  }

  /// Resolves when every event accepted before the call has been stored by the adapter or
  /// dropped, and says how many of them were dropped.
  #[napi]
  pub fn flush<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, FlushResult>> {
    let barrier = self.bus.begin_flush();
    spawn(env, async move { barrier?.await }, |_, r| {
      Ok(convert::flush_result(r))
    })
  }

  /// Stops accepting events, drains every ring to the adapter (bounded by
  /// `shutdownTimeoutMs`), ends subscriptions and closes the adapter. Idempotent; safe to
  /// call concurrently; never rejects. Resolves with the final stats.
  #[napi]
  pub fn shutdown<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, BusStats>> {
    let bus = self.bus.clone();
    spawn(env, async move { Ok(bus.shutdown().await) }, |_, s| {
      Ok(convert::bus_stats(&s))
    })
  }

  /// Reads a page of stored events after `request.cursor`. Rejects with
  /// `ERR_INVALID_CURSOR`, `ERR_INVALID_FILTER`, `ERR_INVALID_CONFIG` or `ERR_SHUT_DOWN`.
  #[napi(ts_return_type = "Promise<PollResult<T>>")]
  pub fn poll<'env>(
    &self,
    env: &'env Env,
    #[napi(ts_arg_type = "PollRequest")] request: Option<Unknown>,
  ) -> Result<PromiseRaw<'env, PollResult>> {
    let bus = self.bus.clone();
    let scope = bus.cursor_scope();
    let req = self.poll_request(env, request);
    spawn(
      env,
      async move {
        let (mut req, from) = req?;
        if let Some(from) = from {
          req.cursor = Some(bus.start_cursor(&from).await?);
        }
        let page = bus.poll(req).await?;
        Ok(page)
      },
      move |_, page| {
        Ok(PollResult {
          events: convert::EventList(page.events),
          cursor: page.cursor.encode(&scope),
          has_more: page.has_more,
        })
      },
    )
  }

  /// An async iterable of events: `for await (const ev of bus.subscribe({ filter, from }))`.
  /// Waits for new events without polling; `break` releases it; shutdown ends it.
  /// Throws `ERR_INVALID_FILTER`, `ERR_INVALID_CURSOR`, `ERR_INVALID_CONFIG` or `ERR_SHUT_DOWN`.
  #[napi(ts_return_type = "AsyncIterableIterator<BusEvent<T>>")]
  pub fn subscribe<'env>(
    &self,
    env: &'env Env,
    #[napi(ts_arg_type = "SubscribeOptions")] options: Option<Unknown>,
  ) -> Result<Object<'env>, Code> {
    let json =
      options_json(env, options, "subscribe options", Code::InvalidConfig).map_err(throw)?;
    let opts: options::SubscribeOptions = match json {
      Some(j) => {
        options::parse_json(&j, "subscribe options", Code::InvalidConfig).map_err(throw)?
      }
      None => options::SubscribeOptions {
        filter: None,
        from: None,
      },
    };
    let filter = opts
      .filter
      .as_ref()
      .map(Filter::parse)
      .transpose()
      .map_err(throw)?;
    let scope = self.bus.cursor_scope();
    let start =
      StartAt::parse(opts.from.as_ref(), &scope, "subscribe options.from").map_err(throw)?;
    let sub = self.bus.subscribe(filter, start).map_err(throw)?;
    Subscription::new(sub).into_iterable(env).map_err(|e| {
      Error::new(
        Code::Internal,
        format!("could not set up the subscription's iterator: {}", e.reason),
      )
    })
  }

  /// Joins a consumer group as a new member: `for await (const ev of consumer)`, then
  /// `consumer.ack(ev)`. The group is created on first use and lives in the backend.
  /// Rejects with `ERR_INVALID_CONFIG` (naming the option), `ERR_INVALID_FILTER`,
  /// `ERR_SHUT_DOWN`, or a backend error (`ERR_ADAPTER`, `ERR_TIMEOUT`).
  #[napi(ts_return_type = "Promise<Consumer<T> & AsyncIterableIterator<GroupEvent<T>>>")]
  pub fn consumer<'env>(
    &self,
    env: &'env Env,
    #[napi(ts_arg_type = "ConsumerOptions")] options: Unknown<'env>,
  ) -> Result<PromiseRaw<'env, Object<'env>>> {
    let opts = self.consumer_options(env, options);
    let bus = self.bus.clone();
    spawn(
      env,
      async move { bus.consumer(opts?).await },
      |env, member| {
        Consumer::new(member).into_iterable(env).map_err(|e| {
          BusError::new(
            Code::Internal,
            format!("could not set up the consumer's iterator: {}", e.reason),
          )
        })
      },
    )
  }

  /// Runs `handler` for the events of `group`: `concurrency` handlers at once across keys,
  /// one at a time per key. A handler that resolves acks its event; one that throws or
  /// rejects is retried with backoff before that key's later events, and after
  /// `maxDeliveries` its event becomes a dead letter with the error's message. Returns at
  /// once; the member joins in the background. Throws `ERR_INVALID_CONFIG`,
  /// `ERR_INVALID_FILTER` or `ERR_SHUT_DOWN`.
  #[napi(
    ts_args_type = "group: string, handler: (event: GroupEvent<T>) => unknown, options?: Omit<ConsumerOptions, 'group'> & WorkerOptions",
    ts_return_type = "Worker"
  )]
  pub fn process<'env>(
    &self,
    env: &'env Env,
    group: Unknown<'env>,
    handler: Unknown<'env>,
    options: Option<Unknown<'env>>,
  ) -> Result<Object<'env>, Code> {
    let run = || -> std::result::Result<Object<'env>, BusError> {
      let group = group_arg(&group, "process()")?;
      if !matches!(handler.get_type(), Ok(ValueType::Function)) {
        return Err(BusError::config(
          "process(): handler must be a function (event) => Promise<void> | void",
        ));
      }
      let json = options_json(env, options, "process options", Code::InvalidConfig)?;
      let (member, worker) = options::process_options(json.as_deref(), &group)?;
      let engine = self.bus.process(member, worker)?;
      Worker::launch(env, engine, handler)
    };
    run().map_err(throw)
  }

  /// A page of `group`'s dead letters, oldest first: `{ events, cursor, hasMore }`.
  /// Each carries `reason`, `deliveries`, `deadLetteredAt` and `letterId`.
  #[napi(
    ts_args_type = "group: string, options?: DeadLettersOptions | undefined | null",
    ts_return_type = "Promise<DeadLetterPage<T>>"
  )]
  pub fn dead_letters<'env>(
    &self,
    env: &'env Env,
    group: Unknown<'env>,
    options: Option<Unknown<'env>>,
  ) -> Result<PromiseRaw<'env, DeadLetterPage>> {
    let bus = self.bus.clone();
    let request = group_arg(&group, "deadLetters()").and_then(|group| {
      let o: DeadLettersOptions = read_options(env, options, "deadLetters options")?;
      Ok((group, o))
    });
    spawn(
      env,
      async move {
        let (group, o) = request?;
        let limit = poll::check_limit(o.limit)?;
        let filter = o.filter.as_ref().map(Filter::parse).transpose()?;
        bus
          .dead_letters(&group, o.cursor.as_deref(), limit, filter.as_ref())
          .await
      },
      |_, page| {
        Ok(DeadLetterPage {
          events: convert::LetterList(page.letters),
          cursor: page.next,
          has_more: page.has_more,
        })
      },
    )
  }

  /// Bus-wide counters as plain numbers; `ingested == stored + dropped + pending` holds.
  #[napi]
  pub fn stats(&self) -> BusStats {
    convert::bus_stats(&self.bus.stats())
  }

  /// Per-shard state and counters, sorted by shard id.
  #[napi]
  pub fn shard_stats(&self) -> Vec<ShardStat> {
    self
      .bus
      .shard_stats()
      .into_iter()
      .map(convert::shard_stat)
      .collect()
  }

  /// What the store holds, per shard: every shard it reports (written by any process) and
  /// this bus's own. Reads the store only. Throws `ERR_ADAPTER`, `ERR_TIMEOUT` or
  /// `ERR_SHUT_DOWN`.
  #[napi(ts_return_type = "Promise<BusInfo>")]
  pub fn info<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, BusInfo>> {
    let bus = self.bus.clone();
    spawn(env, async move { bus.info().await }, |_, shards| {
      Ok(convert::bus_info(shards))
    })
  }

  /// Number of active shards.
  #[napi(getter)]
  pub fn num_shards(&self) -> u32 {
    self.bus.num_shards()
  }

  /// Adds `count` shards at once (within `scaling.maxShards`, default 1024). Resolves with
  /// their ids once they take events. Keys that move to them keep their order: the new
  /// shards write nothing of theirs until the old shards delivered what they held.
  #[napi(ts_return_type = "Promise<number[]>")]
  pub fn scale_up<'env>(&self, env: &'env Env, count: u32) -> Result<PromiseRaw<'env, Vec<u32>>> {
    let bus = self.bus.clone();
    spawn(env, async move { bus.scale_up(count).await }, |_, ids| {
      Ok(ids)
    })
  }

  /// Removes the `count` highest-numbered shards (keeping `scaling.minShards`, default 1).
  /// Resolves with their ids once everything they held is stored or dropped. Their stored
  /// events stay readable with `poll` and existing cursors.
  #[napi(ts_return_type = "Promise<number[]>")]
  pub fn scale_down<'env>(&self, env: &'env Env, count: u32) -> Result<PromiseRaw<'env, Vec<u32>>> {
    let bus = self.bus.clone();
    spawn(env, async move { bus.scale_down(count).await }, |_, ids| {
      Ok(ids)
    })
  }

  /// True while the bus runs and its adapter is reachable.
  #[napi]
  pub fn is_healthy<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, bool>> {
    let bus = self.bus.clone();
    spawn(env, async move { Ok(bus.is_healthy().await) }, |_, h| Ok(h))
  }
}
