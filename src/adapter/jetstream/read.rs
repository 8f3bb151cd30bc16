//! Reads: ephemeral pull consumers (no acks, filtered by the shard's subject, starting after
//! the cursor's stream sequence) fetching many messages per round trip. Idle readers are
//! kept per shard and reused when the next read starts where one stopped; a reader given
//! back fetches the next page in the background. When consumers cannot be placed (a
//! cluster settling), reads go message by message through the stream leader for a while.
//! Subscribers wait with a pull request that expires on the server, never a polling loop.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Weak;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, Consumer, DeliverPolicy};
use async_nats::jetstream::{self, Context};
use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::sync::watch;

use super::JetStreamAdapter;
use crate::adapter::{parse_numeric_position, AdapterError, Positions, ReadPage};

/// Ephemeral read consumers are removed by the server after this much idleness.
const READER_IDLE: Duration = Duration::from_secs(60);
/// How long reads avoid creating consumers after a creation failed.
const FALLBACK_PERIOD: Duration = Duration::from_secs(30);
/// Most messages one request-per-message read returns.
const FALLBACK_PAGE: usize = 256;
/// Idle readers kept per shard.
const MAX_IDLE_READERS: usize = 4;
/// How long a tailing reader's pull waits on the server before it is renewed.
const TAIL_WAIT: Duration = Duration::from_secs(30);
/// Messages fetched per round trip when a read asks for fewer.
const PREFETCH: usize = 512;
/// Longest a fetch may go unanswered, and how long a wait may outlive its expiry. A pull
/// whose server died is never answered after the reconnect (its request is gone with the
/// server) and nothing on the client ends it: without a bound, a read or a subscriber
/// stuck on one waits forever.
const ANSWER_BOUND: Duration = Duration::from_secs(10);
/// The pseudo-shard of reads over every shard in stream order: one consumer filtered by
/// the stream's whole subject space. A filtered consumer on one shard's subject is slow
/// on nats-server 2.9 where that subject is sparse (measured: 0.7-1.2 s for 512
/// messages after a scale-up, against 6 ms where it is dense); one over all subjects
/// never skips.
pub(super) const ALL: u32 = u32::MAX;

/// How errors name what was read.
fn what(shard: u32) -> String {
  if shard == ALL {
    "every shard".to_string()
  } else {
    format!("shard {shard}")
  }
}

/// A read consumer positioned after stream sequence `position` of one shard's subject.
pub(super) struct Reader {
  consumer: Consumer<pull::Config>,
  position: u64,
  /// Consumer sequence of the last delivered message: a jump means a lost delivery.
  consumer_seq: u64,
  /// Messages pulled (ahead, or by a wait) but not yet returned by a read.
  buffer: VecDeque<jetstream::Message>,
  /// Messages the server still holds for this consumer after the last one pulled.
  server_pending: u64,
  /// It follows the tail of its shard for a subscriber: once read dry it waits on the
  /// server again at once, so the next message needs no round trip to be noticed.
  tailing: bool,
  /// The connection it was made on ([`Pool::connection`]).
  connection: u64,
  _owned: Owned,
}

/// A reader's consumer on the server. When the reader goes, the consumer is deleted
/// instead of lingering `READER_IDLE`; at close the adapter deletes every live one itself,
/// before the connection drains.
struct Owned {
  js: Context,
  stream: String,
  name: String,
  pool: Weak<Pool>,
}

impl Drop for Owned {
  fn drop(&mut self) {
    if let Some(pool) = self.pool.upgrade() {
      pool.live.lock().remove(&self.name);
      if pool.closing.load(Ordering::Acquire) {
        return;
      }
    }
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
      let (js, stream, name) = (
        self.js.clone(),
        self.stream.clone(),
        std::mem::take(&mut self.name),
      );
      rt.spawn(async move {
        let _ = js.delete_consumer_from_stream(name, stream).await;
      });
    }
  }
}

/// A reader between reads: ready, fetching the next messages, or waiting for new ones.
pub(super) enum Idle {
  Ready(Box<Reader>),
  /// Started when a read returned and the server holds more: the next page's fetch runs
  /// while JS converts this one. Resolves to the reader, with whatever it fetched.
  Fetching {
    position: u64,
    task: Background<Reader>,
  },
  /// A pull request waits on the server for the shard's next message (a subscriber's
  /// wait). While it is pending the shard has nothing after `position`. The task puts the
  /// reader back as `Ready` when the pull ends, and rings [`Pool::arrived`].
  Waiting {
    position: u64,
    id: u64,
    task: Background<()>,
  },
}

/// A task that is stopped when its handle is dropped unused.
pub(super) struct Background<T>(Option<tokio::task::JoinHandle<T>>);

impl<T> Background<T> {
  fn new(handle: tokio::task::JoinHandle<T>) -> Self {
    Background(Some(handle))
  }

  /// Lets the task run to its end without its handle (it is ending anyway).
  fn release(mut self) {
    self.0.take();
  }
}

impl<T> Drop for Background<T> {
  fn drop(&mut self) {
    if let Some(h) = &self.0 {
      h.abort();
    }
  }
}

impl Idle {
  fn position(&self) -> u64 {
    match self {
      Idle::Ready(r) => r.position,
      Idle::Fetching { position, .. } | Idle::Waiting { position, .. } => *position,
    }
  }
}

/// The idle readers of every shard, shared with the tasks that wait for new messages.
#[derive(Default)]
pub(super) struct Pool {
  readers: Mutex<HashMap<u32, Vec<Idle>>>,
  /// Rung whenever a waiting pull ends (a message arrived, or it expired).
  arrived: watch::Sender<u64>,
  next_wait: AtomicU64,
  /// Consumers of readers that exist, by name.
  live: Mutex<HashSet<String>>,
  closing: AtomicBool,
  /// Counts (re)connections. A server restart loses its in-memory consumers, and a fetch on
  /// a lost consumer comes back empty rather than failing: readers made on an earlier
  /// connection are dropped instead of being read (or waited on) again. A watch, so that
  /// pulls in flight end at a reconnect ([`give_up`]).
  connection: watch::Sender<u64>,
}

impl Pool {
  /// The client (re)connected: every idle reader may stand on a lost consumer.
  pub(super) fn reconnected(&self) {
    self.connection.send_modify(|n| *n += 1);
    self.readers.lock().clear();
    self.arrived.send_modify(|n| *n = n.wrapping_add(1));
  }

  fn current(&self, reader: &Reader) -> bool {
    reader.connection == *self.connection.borrow()
  }

  /// Adds a reader to a shard's list; the least recently used one goes when it is full: a
  /// few per shard (one per concurrent consumer of this bus) is plenty, and keeping old
  /// ones instead would make a reader in use start a new consumer on every page.
  fn put(&self, shard: u32, idle: Idle) {
    push_idle(self.readers.lock().entry(shard).or_default(), idle);
  }

  /// Replaces the finished wait `id` with its reader (or drops it: it failed).
  fn settle(&self, shard: u32, id: u64, reader: Option<Reader>) {
    {
      let mut readers = self.readers.lock();
      if let Some(list) = readers.get_mut(&shard) {
        let found = list
          .iter()
          .position(|r| matches!(r, Idle::Waiting { id: w, .. } if *w == id));
        if let Some(i) = found {
          if let Idle::Waiting { task, .. } = list.remove(i) {
            task.release();
          }
          if let Some(r) = reader.filter(|r| self.current(r)) {
            list.push(Idle::Ready(Box::new(r)));
          }
        }
      }
    }
    self.arrived.send_modify(|n| *n = n.wrapping_add(1));
  }

  /// Drops every reader and returns the names of the consumers still on the server.
  pub(super) fn close(&self) -> Vec<String> {
    self.closing.store(true, Ordering::Release);
    let names: Vec<String> = self.live.lock().iter().cloned().collect();
    self.readers.lock().clear();
    names
  }
}

/// Resolves with the reason to abandon a pull of `connection`: `bound` passed, or the
/// client reconnected since (that pull will never be answered).
fn give_up(pool: &Weak<Pool>, connection: u64, bound: Duration) -> impl Future<Output = String> {
  let watch = pool.upgrade().map(|p| p.connection.subscribe());
  async move {
    let reconnected = async {
      match watch {
        Some(mut rx) => {
          let _ = rx.wait_for(|now| *now != connection).await;
        }
        None => std::future::pending().await,
      }
    };
    tokio::select! {
      _ = tokio::time::sleep(bound) => format!("no answer within {} s", bound.as_secs()),
      _ = reconnected => "the connection to the server was lost".to_string(),
    }
  }
}

/// See [`Pool::put`].
fn push_idle(list: &mut Vec<Idle>, idle: Idle) {
  if list.len() >= MAX_IDLE_READERS {
    list.remove(0);
  }
  list.push(idle);
}

/// What a shard's idle list says about `position`.
enum Found {
  /// A reader there, with messages at hand or on their way.
  Data,
  /// A pull waits there: nothing after `position` yet.
  Waiting,
  /// An idle reader with nothing known, or none.
  Unknown,
}

impl Reader {
  /// Pulls up to `want` more messages into the buffer in one round trip.
  async fn fill(&mut self, want: usize) -> Result<(), String> {
    let give_up = give_up(&self._owned.pool, self.connection, ANSWER_BOUND);
    let pull = async {
      let batch = self
        .consumer
        .fetch()
        .max_messages(want)
        .messages()
        .await
        .map_err(|e| e.to_string())?;
      self.take(batch).await
    };
    tokio::select! {
      answered = pull => answered,
      why = give_up => Err(why),
    }
  }

  /// Moves the messages of one pull request into the buffer, noting what the server holds
  /// after them.
  async fn take(&mut self, mut batch: pull::Batch) -> Result<(), String> {
    while let Some(msg) = batch.next().await {
      let msg = msg.map_err(|e| e.to_string())?;
      self.server_pending = delivery_info(&msg).map_or(self.server_pending, |i| i.2);
      self.buffer.push_back(msg);
    }
    if self.buffer.is_empty() {
      self.server_pending = 0;
    }
    Ok(())
  }
}

impl JetStreamAdapter {
  pub(super) async fn read_page(
    &self,
    shard: u32,
    after: Option<&str>,
    limit: usize,
  ) -> Result<ReadPage, AdapterError> {
    let position = parse_numeric_position(shard, after, "JetStream sequence")?;
    if self.fallback_active() {
      return self.read_by_request(shard, position, limit).await;
    }
    if matches!(self.look(shard, position), Found::Waiting) {
      // A pending pull proves the shard has nothing after `position`; no round trip.
      return Ok(ReadPage {
        remaining: Some(0),
        ..ReadPage::default()
      });
    }
    let mut reader = match self.lease(shard, position).await {
      Ok(r) => r,
      Err(e) => {
        // Readers cannot be placed (e.g. a cluster still settling after losing a node):
        // read through the stream leader until they can again.
        *self.fallback_until.lock() = Some(std::time::Instant::now() + FALLBACK_PERIOD);
        return self
          .read_by_request(shard, position, limit)
          .await
          .map_err(|_| e);
      }
    };
    // With messages at hand and none left on the server (a wait's pull just brought one),
    // the page goes out without another round trip.
    let more_on_server = reader.server_pending > 0;
    if reader.buffer.is_empty() || (reader.buffer.len() < limit && more_on_server) {
      // Fetch ahead: the rest waits in the reader for the next page of this shard.
      let want = (limit - reader.buffer.len()).max(PREFETCH);
      reader.fill(want).await.map_err(|e| {
        self.adapter_error(
          true,
          format!("JetStream read on {} failed: {e}", what(shard)),
        )
      })?;
    }
    let mut page = ReadPage::default();
    let mut examined = 0usize;
    while examined < limit {
      let Some(msg) = reader.buffer.pop_front() else {
        break;
      };
      examined += 1;
      match self.accept(&mut reader, &msg) {
        Ok(seq) => {
          if let Some(of) = self.shard_of(shard, seq, &msg.subject) {
            if let Some(ev) = self.decode(of, seq, msg.headers.as_ref(), &msg.payload) {
              page.events.push(ev);
            }
          }
          page.next = Some(seq.to_string());
        }
        Err(()) => {
          // A delivery went missing: drop this reader; the next read restarts after the
          // last good position.
          page.has_more = true;
          return Ok(page);
        }
      }
    }
    page.has_more = !reader.buffer.is_empty() || reader.server_pending > 0;
    // The consumer reports what the server still holds for its subject after the last
    // delivery; what was delivered but not yet paged out waits in the buffer.
    page.remaining = Some(reader.server_pending + reader.buffer.len() as u64);
    if reader.tailing && reader.buffer.is_empty() && reader.server_pending == 0 {
      self.start_wait(shard, reader, TAIL_WAIT);
    } else {
      // The next page of this shard likely asks for as many.
      self.give_back(shard, reader, limit);
    }
    Ok(page)
  }

  pub(super) async fn end_positions_of(&self, shards: &[u32]) -> Result<Positions, AdapterError> {
    let mut stream = self
      .js
      .get_stream(&self.config.stream)
      .await
      .map_err(|e| self.adapter_error(true, format!("could not read stream state: {e}")))?;
    let last = stream
      .info()
      .await
      .map_err(|e| self.adapter_error(true, format!("could not read stream state: {e}")))?
      .state
      .last_sequence;
    Ok(shards.iter().map(|s| (*s, last.to_string())).collect())
  }

  pub(super) async fn wait_for_data_on(
    &self,
    shards: &[u32],
    after: &Positions,
    max_wait: Duration,
  ) {
    // One pull per shard waits on the server, in a task that outlives this call: a pull
    // given up while pending would lose the message it later receives. Any pull that ends
    // rings `arrived`; the caller then reads, and shards whose pull still waits answer
    // "nothing" without a round trip.
    let mut arrived = self.pool.arrived.subscribe();
    arrived.borrow_and_update();
    for &shard in shards {
      let position = after
        .get(&shard)
        .and_then(|p| p.parse::<u64>().ok())
        .unwrap_or(0);
      match self.look(shard, position) {
        Found::Data => return,
        Found::Waiting => continue,
        Found::Unknown => {}
      }
      let Ok(reader) = self.lease(shard, position).await else {
        // No reader can be placed now: come back later rather than spin.
        tokio::time::sleep(max_wait.min(Duration::from_secs(1))).await;
        return;
      };
      if !reader.buffer.is_empty() || reader.server_pending > 0 {
        self.give_back(shard, reader, PREFETCH);
        return;
      }
      // The pull outlives this wait (which ends after `max_wait`), so it gets the longer bound.
      self.start_wait(shard, reader, TAIL_WAIT.max(max_wait));
    }
    if shards.is_empty() {
      tokio::time::sleep(max_wait).await;
      return;
    }
    let _ = tokio::time::timeout(max_wait, arrived.changed()).await;
  }

  /// Leaves `reader` waiting on the server for its shard's next message.
  fn start_wait(&self, shard: u32, mut reader: Reader, max_wait: Duration) {
    if !self.pool.current(&reader) {
      return;
    }
    let pool = self.pool.clone();
    let id = pool.next_wait.fetch_add(1, Ordering::Relaxed);
    let position = reader.position;
    // The entry goes in before the task can settle it.
    let mut readers = pool.readers.lock();
    let task = tokio::spawn({
      let pool = pool.clone();
      async move {
        let give_up = give_up(
          &reader._owned.pool,
          reader.connection,
          max_wait + ANSWER_BOUND,
        );
        let pull = async {
          match reader
            .consumer
            .batch()
            .max_messages(1)
            .expires(max_wait)
            .messages()
            .await
          {
            Ok(batch) => reader.take(batch).await.is_ok(),
            Err(_) => false,
          }
        };
        let ok = tokio::select! {
          ok = pull => ok,
          _ = give_up => false,
        };
        reader.tailing = true;
        // A failed pull leaves the consumer in doubt: the next read opens a new one.
        pool.settle(shard, id, ok.then_some(reader));
      }
    });
    let waiting = Idle::Waiting {
      position,
      id,
      task: Background::new(task),
    };
    push_idle(readers.entry(shard).or_default(), waiting);
  }

  /// What the idle list holds for `shard` at `position`, without taking it.
  fn look(&self, shard: u32, position: u64) -> Found {
    let readers = self.pool.readers.lock();
    let Some(list) = readers.get(&shard) else {
      return Found::Unknown;
    };
    match list.iter().find(|r| r.position() == position) {
      Some(Idle::Ready(r)) if !r.buffer.is_empty() || r.server_pending > 0 => Found::Data,
      Some(Idle::Fetching { .. }) => Found::Data,
      Some(Idle::Waiting { .. }) => Found::Waiting,
      _ => Found::Unknown,
    }
  }

  /// An idle reader at `position`, or a new consumer starting after it.
  async fn lease(&self, shard: u32, position: u64) -> Result<Reader, AdapterError> {
    let idle = {
      let mut readers = self.pool.readers.lock();
      readers.get_mut(&shard).and_then(|list| {
        // A waiting reader stays with its pull; this read gets a consumer of its own.
        let i = list
          .iter()
          .position(|r| r.position() == position && !matches!(r, Idle::Waiting { .. }))?;
        Some(list.remove(i))
      })
    };
    match idle {
      Some(Idle::Ready(r)) => return Ok(*r),
      Some(Idle::Fetching { mut task, .. }) => {
        // A fetch ahead that failed left what it got; the read fetches the rest itself.
        if let Some(handle) = task.0.as_mut() {
          if let Ok(reader) = handle.await {
            task.release();
            return Ok(reader);
          }
        }
      }
      Some(Idle::Waiting { .. }) | None => {}
    }
    let config = pull::Config {
      deliver_policy: DeliverPolicy::ByStartSequence {
        start_sequence: position + 1,
      },
      ack_policy: AckPolicy::None,
      filter_subject: self.subject(shard),
      inactive_threshold: READER_IDLE,
      memory_storage: true,
      num_replicas: 1,
      ..Default::default()
    };
    let consumer = self
      .js
      .create_consumer_on_stream(config, &self.config.stream)
      .await
      .map_err(|e| {
        self.adapter_error(
          true,
          format!("could not open a JetStream reader on {}: {e}", what(shard)),
        )
      })?;
    let name = consumer.cached_info().name.clone();
    self.pool.live.lock().insert(name.clone());
    Ok(Reader {
      connection: *self.pool.connection.borrow(),
      _owned: Owned {
        js: self.js.clone(),
        stream: self.config.stream.clone(),
        name,
        pool: std::sync::Arc::downgrade(&self.pool),
      },
      consumer,
      position,
      consumer_seq: 0,
      buffer: VecDeque::new(),
      server_pending: 0,
      tailing: false,
    })
  }

  /// Returns a reader to the idle list. When the server holds more for it and fewer than
  /// `next_page` messages are buffered, the rest of the next page is fetched meanwhile.
  fn give_back(&self, shard: u32, mut reader: Reader, next_page: usize) {
    if !self.pool.current(&reader) {
      return;
    }
    let want = next_page.max(PREFETCH);
    let idle = if reader.buffer.len() < want && reader.server_pending > 0 {
      let position = reader.position;
      let want = want - reader.buffer.len();
      let task = tokio::spawn(async move {
        let _ = reader.fill(want).await;
        reader
      });
      Idle::Fetching {
        position,
        task: Background::new(task),
      }
    } else {
      Idle::Ready(Box::new(reader))
    };
    self.pool.put(shard, idle);
  }

  /// The shard of a message read for `shard` (for [`ALL`]: from its subject).
  fn shard_of(&self, shard: u32, seq: u64, subject: &str) -> Option<u32> {
    if shard != ALL {
      return Some(shard);
    }
    let of = self.shard_of_subject(subject);
    if of.is_none() {
      self.note_corrupt(seq, "its subject names no shard");
    }
    of
  }

  /// Accepts a delivered message into `reader`, or reports a lost delivery.
  fn accept(&self, reader: &mut Reader, msg: &jetstream::Message) -> Result<u64, ()> {
    let (stream_seq, consumer_seq, _) = delivery_info(msg).ok_or(())?;
    if consumer_seq != reader.consumer_seq + 1 {
      return Err(());
    }
    reader.consumer_seq = consumer_seq;
    reader.position = stream_seq;
    Ok(stream_seq)
  }

  fn fallback_active(&self) -> bool {
    let mut until = self.fallback_until.lock();
    match *until {
      Some(t) if t > std::time::Instant::now() => true,
      Some(_) => {
        *until = None;
        false
      }
      None => false,
    }
  }

  /// Reads message by message through the stream leader (`next_by_subj` requests): slower
  /// than a consumer, but needs no consumer placement.
  async fn read_by_request(
    &self,
    shard: u32,
    position: u64,
    limit: usize,
  ) -> Result<ReadPage, AdapterError> {
    let stream = self
      .js
      .get_stream_no_info(&self.config.stream)
      .await
      .map_err(|e| {
        self.adapter_error(
          true,
          format!("JetStream read on {} failed: {e}", what(shard)),
        )
      })?;
    let subject = self.subject(shard);
    let mut page = ReadPage::default();
    let mut next = position + 1;
    for _ in 0..limit.min(FALLBACK_PAGE) {
      let got = stream
        .raw_message_builder()
        .sequence(next)
        .next_by_subject(subject.clone())
        .send()
        .await;
      match got {
        Ok(msg) => {
          if let Some(of) = self.shard_of(shard, msg.sequence, &msg.subject) {
            if let Some(ev) = self.decode(of, msg.sequence, Some(&msg.headers), &msg.payload) {
              page.events.push(ev);
            }
          }
          page.next = Some(msg.sequence.to_string());
          next = msg.sequence + 1;
        }
        Err(e)
          if e.kind() == async_nats::jetstream::stream::RawMessageErrorKind::NoMessageFound =>
        {
          page.has_more = false;
          return Ok(page);
        }
        Err(e) if page.next.is_none() => {
          return Err(self.adapter_error(
            true,
            format!("JetStream read on {} failed: {e}", what(shard)),
          ))
        }
        Err(_) => break,
      }
    }
    page.has_more = true;
    Ok(page)
  }
}

/// (stream sequence, consumer sequence, pending) of a JetStream delivery.
fn delivery_info(msg: &jetstream::Message) -> Option<(u64, u64, u64)> {
  let info = msg.info().ok()?;
  Some((info.stream_sequence, info.consumer_sequence, info.pending))
}
