//! Consumer groups from the bus: members and workers it starts and waits for at
//! shutdown, and dead letters read and redriven from outside a member.

use super::*;

/// How long joining a group may take beyond waiting out a listed name.
const JOIN_BOUND: Duration = Duration::from_secs(30);

impl Bus {
  /// Joins a consumer group (DESIGN §8); `bus.shutdown()` closes the member.
  pub async fn consumer(&self, opts: GroupOptions) -> Result<Member> {
    let member = self.start_member(opts, true).await?;
    self.track(member.done_signal())?;
    Ok(member)
  }

  /// Starts a `process()` worker over a new member of `opts.group`. Returns at once; the
  /// member joins in the background, retrying while the backend is unreachable.
  pub fn process(&self, opts: GroupOptions, worker: WorkerOptions) -> Result<Worker> {
    worker.validate()?;
    opts.validate()?;
    self.group_store()?;
    if !self.is_running() {
      return Err(BusError::shut_down());
    }
    let bus = self.clone();
    let closing = self.core.closing.clone();
    let join = crate::group::join::with_retries(opts, closing, move |opts| {
      let bus = bus.clone();
      async move { bus.start_member(opts, false).await }
    });
    let signals = crate::group::worker::BusSignals {
      closing: self.core.closing.clone(),
      exiting: self.core.exiting.clone(),
      released: self.core.released.clone(),
    };
    let w = Worker::start(join, worker, signals, &self.core.rt);
    self.track(w.done_signal())?;
    Ok(w)
  }

  async fn start_member(&self, opts: GroupOptions, follows_bus: bool) -> Result<Member> {
    if !self.is_running() {
      return Err(BusError::shut_down());
    }
    let start = Member::start(
      opts.clone(),
      self.core.telemetry.group(&opts.group),
      self.core.adapter.clone(),
      self.core.shards.clone(),
      self.core.closing.clone(),
      follows_bus,
      &self.core.rt,
    );
    // A join waits at most a lease for a name still listed, plus this much for the store:
    // past that it is ERR_TIMEOUT, never a hang.
    let bound = opts.lease + opts.renew_every() + JOIN_BOUND;
    let group = opts.group.clone();
    let member = tokio::select! {
      m = tokio::time::timeout(bound, start) => m.map_err(|_| BusError::new(
        Code::Timeout,
        format!(
          "joining group {group:?} did not finish within {} ms: the store is unreachable or overloaded; try again (and check the server)",
          bound.as_millis()
        ),
      ))??,
      _ = self.core.closing.wait() => return Err(BusError::shut_down()),
    };
    if !self.is_running() {
      member.close().await;
      return Err(BusError::shut_down());
    }
    Ok(member)
  }

  /// Registers a member or worker for shutdown to wait on.
  fn track(&self, done: Arc<Signal>) -> Result<()> {
    let mut members = self.core.members.lock();
    if !self.is_running() {
      return Err(BusError::shut_down());
    }
    members.retain(|d| !d.is_fired());
    members.push(done);
    Ok(())
  }

  /// The group store, or why this adapter has none.
  fn group_store(&self) -> Result<&dyn GroupStore> {
    crate::group::member::group_store(self.core.adapter.as_ref())
  }

  /// A page of `group`'s dead letters, oldest first.
  pub async fn dead_letters(
    &self,
    group: &str,
    after: Option<&str>,
    limit: usize,
    filter: Option<&Filter>,
  ) -> Result<LetterPage> {
    crate::group::letters::check_page(group, after)?;
    if !self.is_running() {
      return Err(BusError::shut_down());
    }
    crate::group::letters::dead_letters(self.group_store()?, group, after, limit, filter).await
  }

  /// Moves dead letters (by letter id) back into `group`: the member that owns each one's
  /// shard delivers it again. Returns how many were found and moved.
  pub async fn redeliver(&self, group: &str, ids: &[String]) -> Result<usize> {
    crate::group::check_name("group", group)?;
    if !self.is_running() {
      return Err(BusError::shut_down());
    }
    crate::group::letters::redeliver(self.group_store()?, group, ids).await
  }
}

/// Inspection and administration of groups from outside (DESIGN §9): these read the
/// store and join no group.
impl Bus {
  fn admin_ready(&self) -> Result<&dyn GroupStore> {
    if !self.is_running() {
      return Err(BusError::shut_down());
    }
    self.group_store()
  }

  async fn stored_shards(&self) -> Vec<u32> {
    crate::consume::read_shards(self.core.adapter.as_ref(), self.core.shard_ids()).await
  }

  /// Every group the store holds, sorted by name.
  pub async fn group_names(&self) -> Result<Vec<String>> {
    Ok(self.admin_ready()?.group_names().await?)
  }

  /// Every group the store holds, with its members, shards and letters, sorted by name.
  pub async fn group_views(&self) -> Result<Vec<GroupView>> {
    let store = self.admin_ready()?;
    let shards = self.stored_shards().await;
    crate::group::inspect::views(self.core.adapter.as_ref(), store, &shards).await
  }

  /// One group: members, each shard's owner, committed position and lag, its letters.
  pub async fn group_view(&self, group: &str) -> Result<GroupView> {
    crate::group::check_name("group", group)?;
    let store = self.admin_ready()?;
    let shards = self.stored_shards().await;
    crate::group::inspect::view(self.core.adapter.as_ref(), store, &shards, group).await
  }

  /// Moves every shard of `group` to `to`; refused while the group has live members.
  pub async fn reset_group(
    &self,
    group: &str,
    to: &StartAt,
    dry_run: bool,
  ) -> Result<Vec<ResetShard>> {
    crate::group::check_name("group", group)?;
    let store = self.admin_ready()?;
    let shards = self.stored_shards().await;
    crate::group::inspect::reset(
      self.core.adapter.as_ref(),
      store,
      &shards,
      group,
      to,
      dry_run,
    )
    .await
  }

  /// Purges or redelivers the dead letters `sel` selects; returns how many (would have).
  pub async fn dead_letters_bulk(
    &self,
    group: &str,
    sel: &Selection,
    action: Bulk,
    dry_run: bool,
  ) -> Result<usize> {
    crate::group::check_name("group", group)?;
    crate::group::letters::bulk(self.admin_ready()?, group, sel, action, dry_run).await
  }
}
