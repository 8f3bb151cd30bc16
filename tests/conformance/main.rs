//! One contract for every store: the same `Adapter` and `GroupStore` tests run against
//! memory, NATS JetStream and Redis. A new backend is added to `backends.rs` and passes
//! this suite before anything else is built on it.
//!
//! JetStream and Redis are the servers `.ci/run` starts (`RINGBUS_NATS_URL`,
//! `RINGBUS_REDIS_URL`, default 127.0.0.1); a server that cannot be reached fails these
//! tests, it never skips them.

mod adapter_contract;
mod backends;
mod group_contract;

/// Runs each named contract test against each backend, as `<suite>::<backend>::<test>`.
macro_rules! contract {
  ($suite:ident = $contract:ident: $($test:ident),+ $(,)?) => {
    mod $suite {
      contract!(@backend $contract memory: $($test),+);
      contract!(@backend $contract jetstream: $($test),+);
      contract!(@backend $contract redis: $($test),+);
    }
  };
  (@backend $contract:ident $backend:ident: $($test:ident),+) => {
    mod $backend {
      $(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $test() {
          let store = crate::backends::$backend().await;
          crate::$contract::$test(&store).await;
          store.remove().await;
        }
      )+
    }
  };
}

contract!(adapter = adapter_contract:
  writes_read_back_in_order_with_their_positions,
  a_retried_write_is_stored_once,
  end_positions_mark_the_end_of_each_shard,
  a_wait_ends_when_data_arrives,
  a_wait_without_data_ends_by_its_bound,
  a_position_from_elsewhere_is_an_invalid_cursor,
  shared_stores_report_the_shards_written,
  positions_at_a_time_start_at_the_first_record_stored_then,
  shard_info_counts_what_each_shard_holds,
);

contract!(group_store = group_contract:
  members_are_ranked_by_name_and_expire,
  a_lease_has_one_holder_until_it_expires_or_is_released,
  only_the_lease_holder_commits,
  the_first_start_record_wins,
  letters_page_in_order_and_are_taken_by_id,
  groups_are_seen_from_outside,
);
