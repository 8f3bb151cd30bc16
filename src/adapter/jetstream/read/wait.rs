//! Waiting for new messages without polling: a pull request that expires on the server,
//! run by a background task that puts its reader back when the pull ends.

use super::*;

impl JetStreamAdapter {
  pub(in crate::adapter::jetstream) async fn wait_for_data_on(
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
  pub(super) fn start_wait(&self, shard: u32, mut reader: Reader, max_wait: Duration) {
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
}
