//! The pool of idle readers: per shard, consumers positioned where a read stopped, kept
//! for the next read (which then needs no new consumer), fetching ahead in the background
//! or waiting on the server for a subscriber.

use super::*;

/// A read consumer positioned after stream sequence `position` of one shard's subject.
pub(in crate::adapter::jetstream) struct Reader {
  pub(super) consumer: Consumer<pull::Config>,
  pub(super) position: u64,
  /// Consumer sequence of the last delivered message: a jump means a lost delivery.
  pub(super) consumer_seq: u64,
  /// Messages pulled (ahead, or by a wait) but not yet returned by a read.
  pub(super) buffer: VecDeque<jetstream::Message>,
  /// Messages the server still holds for this consumer after the last one pulled.
  pub(super) server_pending: u64,
  /// It follows the tail of its shard for a subscriber: once read dry it waits on the
  /// server again at once, so the next message needs no round trip to be noticed.
  pub(super) tailing: bool,
  /// The connection it was made on ([`Pool::connection`]).
  pub(super) connection: u64,
  pub(super) _owned: Owned,
}

/// A reader's consumer on the server. When the reader goes, the consumer is deleted
/// instead of lingering `READER_IDLE`; at close the adapter deletes every live one itself,
/// before the connection drains.
pub(super) struct Owned {
  pub(super) js: Context,
  pub(super) stream: String,
  pub(super) name: String,
  pub(super) pool: Weak<Pool>,
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
pub(in crate::adapter::jetstream) enum Idle {
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
pub(in crate::adapter::jetstream) struct Background<T>(Option<tokio::task::JoinHandle<T>>);

impl<T> Background<T> {
  pub(super) fn new(handle: tokio::task::JoinHandle<T>) -> Self {
    Background(Some(handle))
  }

  /// Lets the task run to its end without its handle (it is ending anyway).
  pub(super) fn release(mut self) {
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
  pub(super) fn position(&self) -> u64 {
    match self {
      Idle::Ready(r) => r.position,
      Idle::Fetching { position, .. } | Idle::Waiting { position, .. } => *position,
    }
  }
}

/// The idle readers of every shard, shared with the tasks that wait for new messages.
#[derive(Default)]
pub(in crate::adapter::jetstream) struct Pool {
  pub(super) readers: Mutex<HashMap<u32, Vec<Idle>>>,
  /// Rung whenever a waiting pull ends (a message arrived, or it expired).
  pub(super) arrived: watch::Sender<u64>,
  pub(super) next_wait: AtomicU64,
  /// Consumers of readers that exist, by name.
  pub(super) live: Mutex<HashSet<String>>,
  pub(super) closing: AtomicBool,
  /// Counts (re)connections. A server restart loses its in-memory consumers, and a fetch on
  /// a lost consumer comes back empty rather than failing: readers made on an earlier
  /// connection are dropped instead of being read (or waited on) again. A watch, so that
  /// pulls in flight end at a reconnect ([`give_up`]).
  pub(super) connection: watch::Sender<u64>,
}

impl Pool {
  /// The client (re)connected: every idle reader may stand on a lost consumer.
  pub(in crate::adapter::jetstream) fn reconnected(&self) {
    self.connection.send_modify(|n| *n += 1);
    self.readers.lock().clear();
    self.arrived.send_modify(|n| *n = n.wrapping_add(1));
  }

  pub(super) fn current(&self, reader: &Reader) -> bool {
    reader.connection == *self.connection.borrow()
  }

  /// Adds a reader to a shard's list; the least recently used one goes when it is full: a
  /// few per shard (one per concurrent consumer of this bus) is plenty, and keeping old
  /// ones instead would make a reader in use start a new consumer on every page.
  pub(super) fn put(&self, shard: u32, idle: Idle) {
    push_idle(self.readers.lock().entry(shard).or_default(), idle);
  }

  /// Replaces the finished wait `id` with its reader (or drops it: it failed).
  pub(super) fn settle(&self, shard: u32, id: u64, reader: Option<Reader>) {
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
  pub(in crate::adapter::jetstream) fn close(&self) -> Vec<String> {
    self.closing.store(true, Ordering::Release);
    let names: Vec<String> = self.live.lock().iter().cloned().collect();
    self.readers.lock().clear();
    names
  }
}

/// Resolves with the reason to abandon a pull of `connection`: `bound` passed, or the
/// client reconnected since (that pull will never be answered).
pub(super) fn give_up(
  pool: &Weak<Pool>,
  connection: u64,
  bound: Duration,
) -> impl Future<Output = String> {
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
pub(super) fn push_idle(list: &mut Vec<Idle>, idle: Idle) {
  if list.len() >= MAX_IDLE_READERS {
    list.remove(0);
  }
  list.push(idle);
}

/// What a shard's idle list says about `position`.
pub(super) enum Found {
  /// A reader there, with messages at hand or on their way.
  Data,
  /// A pull waits there: nothing after `position` yet.
  Waiting,
  /// An idle reader with nothing known, or none.
  Unknown,
}

impl Reader {
  /// Pulls up to `want` more messages into the buffer in one round trip.
  pub(super) async fn fill(&mut self, want: usize) -> Result<(), String> {
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
  pub(super) async fn take(&mut self, mut batch: pull::Batch) -> Result<(), String> {
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
  /// What the idle list holds for `shard` at `position`, without taking it.
  pub(super) fn look(&self, shard: u32, position: u64) -> Found {
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
  pub(super) async fn lease(&self, shard: u32, position: u64) -> Result<Reader, AdapterError> {
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
      filter_subject: self.consumer_filter(shard),
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
  pub(super) fn give_back(&self, shard: u32, mut reader: Reader, next_page: usize) {
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
}
