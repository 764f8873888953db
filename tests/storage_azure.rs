//! The Azure Storage backend against a real Azurite (one private instance per
//! test, in memory, on 127.0.0.1): every trait method, the call counts, and
//! the errors a user sees.

#[path = "support/azurite.rs"]
mod azurite;

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime};

use azurite::Azurite;
use host::storage::azure::{connect, probe};
use host::storage::{CallCounts, Entity, Storage, StorageError, TableOp};
use serde_json::json;

fn storage(azurite: &Azurite) -> Storage {
    connect(&azurite.connection_string).unwrap()
}

fn counts(queue: u64, table: u64, blob: u64) -> CallCounts {
    CallCounts { queue, table, blob }
}

/// Poll `receive` until a message shows up, within `deadline`.
async fn receive_within(
    storage: &Storage,
    queue: &str,
    deadline: Duration,
) -> host::storage::QueueMessage {
    let end = Instant::now() + deadline;
    loop {
        let mut got = storage
            .queues
            .receive(queue, 1, Duration::from_secs(30))
            .await
            .unwrap();
        if let Some(message) = got.pop() {
            return message;
        }
        assert!(
            Instant::now() < end,
            "no message in queue '{queue}' within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---- queues ----

#[tokio::test]
async fn queue_messages_arrive_as_sent_and_are_deleted() {
    let azurite = Azurite::start();
    let s = storage(&azurite);
    s.queues.create_queue("orders").await.unwrap();
    s.queues.create_queue("orders").await.unwrap(); // again: still fine
    let odd = r#"{"a":"<b> & 'c' \"d\" ü ✓"}"#;
    s.queues
        .send("orders", "first", Duration::ZERO)
        .await
        .unwrap();
    s.queues.send("orders", odd, Duration::ZERO).await.unwrap();
    assert_eq!(s.queues.approximate_count("orders").await.unwrap(), 2);

    let before = SystemTime::now() - Duration::from_secs(60);
    let got = s
        .queues
        .receive("orders", 32, Duration::from_secs(30))
        .await
        .unwrap();
    let texts: BTreeSet<_> = got.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, BTreeSet::from(["first", odd]));
    for m in &got {
        assert_eq!(m.dequeue_count, 1);
        assert!(m.insertion_time > before && !m.pop_receipt.is_empty() && !m.id.is_empty());
    }
    // Both are invisible now.
    assert!(
        s.queues
            .receive("orders", 32, Duration::from_secs(30))
            .await
            .unwrap()
            .is_empty()
    );

    s.queues.delete("orders", &got[0]).await.unwrap();
    assert_eq!(s.queues.approximate_count("orders").await.unwrap(), 1);
    let again = s.queues.delete("orders", &got[0]).await.unwrap_err();
    assert!(matches!(again, StorageError::NotFound(_)), "{again:?}");
}

#[tokio::test]
async fn an_undeleted_message_comes_back_with_a_higher_dequeue_count() {
    let azurite = Azurite::start();
    let s = storage(&azurite);
    s.queues.create_queue("work").await.unwrap();
    s.queues.send("work", "job", Duration::ZERO).await.unwrap();
    let first = s
        .queues
        .receive("work", 1, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    let taken = Instant::now();
    let second = receive_within(&s, "work", Duration::from_secs(10)).await;
    assert!(
        taken.elapsed() >= Duration::from_millis(900),
        "visible again after {:?}",
        taken.elapsed()
    );
    assert_eq!(second.id, first[0].id);
    assert_eq!(second.dequeue_count, 2);
    // The first receipt is stale now: another consumer owns the message.
    let stale = s.queues.delete("work", &first[0]).await.unwrap_err();
    // Azurite answers 400 PopReceiptMismatch (Conflict); Azure may answer 404.
    assert!(matches!(stale, StorageError::Conflict(_)), "{stale:?}");
    s.queues.delete("work", &second).await.unwrap();
}

#[tokio::test]
async fn a_delayed_message_stays_hidden_until_its_delay() {
    let azurite = Azurite::start();
    let s = storage(&azurite);
    s.queues.create_queue("timers").await.unwrap();
    let sent = Instant::now();
    s.queues
        .send("timers", "fire", Duration::from_millis(1500))
        .await
        .unwrap(); // rounds up to 2 s
    assert!(
        s.queues
            .receive("timers", 32, Duration::from_secs(30))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.queues.approximate_count("timers").await.unwrap(), 1);
    let message = receive_within(&s, "timers", Duration::from_secs(10)).await;
    assert!(
        sent.elapsed() >= Duration::from_millis(1900),
        "visible after {:?}",
        sent.elapsed()
    );
    assert_eq!(message.text, "fire");
}

#[tokio::test]
async fn set_visibility_abandons_a_message_and_renews_its_receipt() {
    let azurite = Azurite::start();
    let s = storage(&azurite);
    s.queues.create_queue("abandon").await.unwrap();
    s.queues
        .send("abandon", "retry me", Duration::ZERO)
        .await
        .unwrap();
    let got = s
        .queues
        .receive("abandon", 1, Duration::from_secs(60))
        .await
        .unwrap()
        .remove(0);
    let abandoned = s
        .queues
        .set_visibility("abandon", &got, Duration::ZERO)
        .await
        .unwrap();
    assert_ne!(abandoned.pop_receipt, got.pop_receipt);
    assert_eq!(
        (abandoned.id.as_str(), abandoned.text.as_str()),
        (got.id.as_str(), "retry me")
    );

    let again = s
        .queues
        .receive("abandon", 1, Duration::from_secs(60))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        (again.id.as_str(), again.text.as_str(), again.dequeue_count),
        (got.id.as_str(), "retry me", 2)
    );
    // Hide it longer, then delete with the newest receipt.
    let hidden = s
        .queues
        .set_visibility("abandon", &again, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(
        s.queues
            .receive("abandon", 1, Duration::from_secs(60))
            .await
            .unwrap()
            .is_empty()
    );
    s.queues.delete("abandon", &hidden).await.unwrap();
    assert_eq!(s.queues.approximate_count("abandon").await.unwrap(), 0);
}

#[tokio::test]
async fn queue_errors_name_the_queue() {
    let azurite = Azurite::start();
    let s = storage(&azurite);
    let missing = s
        .queues
        .receive("nosuchqueue", 1, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(
        matches!(&missing, StorageError::NotFound(m) if m.contains("'nosuchqueue'")),
        "{missing:?}"
    );
    let missing = s.queues.delete_queue("nosuchqueue").await.unwrap_err();
    assert!(matches!(missing, StorageError::NotFound(_)), "{missing:?}");
    let calls = s.calls();
    let too_many = s
        .queues
        .receive("nosuchqueue", 33, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(
        matches!(&too_many, StorageError::Other(m) if m.contains("1 to 32")),
        "{too_many:?}"
    );
    let too_long = s
        .queues
        .send("nosuchqueue", "x", Duration::from_secs(8 * 24 * 3600))
        .await
        .unwrap_err();
    assert!(
        matches!(&too_long, StorageError::Other(m) if m.contains("7-day")),
        "{too_long:?}"
    );
    assert_eq!(s.calls(), calls, "refused before any call");
    s.queues.create_queue("gone").await.unwrap();
    s.queues.delete_queue("gone").await.unwrap();
}

// ---- tables ----

#[tokio::test]
async fn entities_are_inserted_once_and_read_back_with_their_types() {
    let azurite = Azurite::start();
    let s = storage(&azurite);
    s.tables.create_table("Instances").await.unwrap();
    s.tables.create_table("Instances").await.unwrap(); // again: still fine
    let entity = Entity::new("it's a key", "row 'one'")
        .with("Name", "hello")
        .with("Small", 42)
        .with("Big", 1_i64 << 53 | 1)
        .with("Negative", i64::MIN)
        .with("Ratio", 2.0)
        .with("Pi", 3.25)
        .with("Done", true)
        .with("Nothing", serde_json::Value::Null);
    let etag = s
        .tables
        .execute("Instances", TableOp::Insert(entity.clone()))
        .await
        .unwrap()
        .unwrap();
    let conflict = s
        .tables
        .execute("Instances", TableOp::Insert(entity.clone()))
        .await
        .unwrap_err();
    assert!(
        matches!(conflict, StorageError::Conflict(_)),
        "{conflict:?}"
    );

    let read = s
        .tables
        .get("Instances", "it's a key", "row 'one'")
        .await
        .unwrap()
        .unwrap();
    let mut expected = entity.clone();
    expected.properties.remove("Nothing");
    expected.etag = Some(etag);
    assert_eq!(read, expected);
    assert_eq!(read.i64("Big"), Some(1_i64 << 53 | 1));
    assert!(read.properties["Ratio"].is_f64());

    assert_eq!(
        s.tables
            .get("Instances", "it's a key", "other")
            .await
            .unwrap(),
        None
    );
    let no_table = s.tables.get("NoSuchTable", "p", "r").await.unwrap_err();
    assert!(
        matches!(&no_table, StorageError::NotFound(m) if m.contains("NoSuchTable")),
        "{no_table:?}"
    );
    let nested = s.tables.execute(
        "Instances",
        TableOp::Upsert(Entity::new("p", "r").with("List", json!([1]))),
    );
    assert!(matches!(nested.await.unwrap_err(), StorageError::Other(m) if m.contains("\"List\"")));
}

#[tokio::test]
async fn upsert_replaces_and_merge_keeps_other_properties() {
    let azurite = Azurite::start();
    let s = storage(&azurite);
    s.tables.create_table("Tab").await.unwrap();
    let base = Entity::new("p", "r").with("A", 1).with("B", "b");
    s.tables
        .execute("Tab", TableOp::Upsert(base))
        .await
        .unwrap();
    s.tables
        .execute("Tab", TableOp::Upsert(Entity::new("p", "r").with("A", 2)))
        .await
        .unwrap();
    let read = s.tables.get("Tab", "p", "r").await.unwrap().unwrap();
    assert_eq!((read.i64("A"), read.str("B")), (Some(2), None));

    s.tables
        .execute("Tab", TableOp::Merge(Entity::new("p", "r").with("C", "c")))
        .await
        .unwrap();
    let read = s.tables.get("Tab", "p", "r").await.unwrap().unwrap();
    assert_eq!((read.i64("A"), read.str("C")), (Some(2), Some("c")));
    // Merge inserts when missing.
    s.tables
        .execute(
            "Tab",
            TableOp::Merge(Entity::new("p", "new").with("C", "c")),
        )
        .await
        .unwrap();
    assert!(s.tables.get("Tab", "p", "new").await.unwrap().is_some());
}

#[tokio::test]
async fn replace_and_delete_check_the_etag() {
    let azurite = Azurite::start();
    let s = storage(&azurite);
    s.tables.create_table("Tab").await.unwrap();
    let first = s
        .tables
        .execute("Tab", TableOp::Insert(Entity::new("p", "r").with("V", 1)))
        .await
        .unwrap()
        .unwrap();
    let replace = |v: i64, etag: &str| TableOp::Replace {
        entity: Entity::new("p", "r").with("V", v),
        etag: etag.to_string(),
    };
    let second = s
        .tables
        .execute("Tab", replace(2, &first))
        .await
        .unwrap()
        .unwrap();
    assert_ne!(first, second);
    let stale = s
        .tables
        .execute("Tab", replace(3, &first))
        .await
        .unwrap_err();
    assert!(matches!(stale, StorageError::Conflict(_)), "{stale:?}");
    assert_eq!(
        s.tables
            .get("Tab", "p", "r")
            .await
            .unwrap()
            .unwrap()
            .i64("V"),
        Some(2)
    );
    // The ETag a query returns works as well as the one a write returned.
    let queried = s
        .tables
        .query_partition("Tab", "p")
        .await
        .unwrap()
        .remove(0)
        .etag
        .unwrap();
    assert_eq!(queried, second);

    let delete = |etag: Option<&str>| TableOp::Delete {
        partition_key: "p".into(),
        row_key: "r".into(),
        etag: etag.map(str::to_string),
    };
    let stale = s
        .tables
        .execute("Tab", delete(Some(&first)))
        .await
        .unwrap_err();
    assert!(matches!(stale, StorageError::Conflict(_)), "{stale:?}");
    assert_eq!(
        s.tables
            .execute("Tab", delete(Some(&second)))
            .await
            .unwrap(),
        None
    );
    let missing = s.tables.execute("Tab", delete(None)).await.unwrap_err();
    assert!(matches!(missing, StorageError::NotFound(_)), "{missing:?}");
    let missing = s
        .tables
        .execute("Tab", replace(4, &second))
        .await
        .unwrap_err();
    assert!(matches!(missing, StorageError::NotFound(_)), "{missing:?}");
}

#[tokio::test]
async fn query_partition_returns_every_row_in_row_key_order_across_pages() {
    let azurite = Azurite::start();
    let s = storage(&azurite);
    s.tables.create_table("History").await.unwrap();
    // 1,050 rows: more than the service's 1,000 per page.
    let rows: Vec<String> = (0..1050).map(|i| format!("{:016X}", i * 7)).collect();
    let mut shuffled = rows.clone();
    shuffled.reverse();
    for chunk in shuffled.chunks(100) {
        let ops = chunk
            .iter()
            .map(|rk| TableOp::Insert(Entity::new("inst", rk.as_str()).with("E", "x")))
            .collect();
        s.tables.batch("History", ops).await.unwrap();
    }
    s.tables
        .execute("History", TableOp::Insert(Entity::new("other", "0")))
        .await
        .unwrap();
    let before = s.calls().table;
    let got = s.tables.query_partition("History", "inst").await.unwrap();
    assert_eq!(
        got.iter().map(|e| e.row_key.clone()).collect::<Vec<_>>(),
        rows
    );
    assert_eq!(s.calls().table - before, 2, "two pages");
    assert!(
        s.tables
            .query_partition("History", "none")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn query_pages_through_a_filter_with_top() {
    let azurite = Azurite::start();
    let s = storage(&azurite);
    s.tables.create_table("Instances").await.unwrap();
    for pk in ["a", "b", "c"] {
        let ops = (0..10)
            .map(|i| {
                let status = if i % 2 == 0 { "Running" } else { "Completed" };
                TableOp::Insert(
                    Entity::new(pk, format!("{i:02}"))
                        .with("RuntimeStatus", status)
                        .with("N", i),
                )
            })
            .collect();
        s.tables.batch("Instances", ops).await.unwrap();
    }
    let filter = "RuntimeStatus eq 'Running' and N ge 2 and PartitionKey ne 'b'";
    let mut seen = Vec::new();
    let mut continuation = None;
    let mut pages = 0;
    loop {
        let page = s
            .tables
            .query("Instances", Some(filter), Some(3), continuation.as_deref())
            .await
            .unwrap();
        pages += 1;
        assert!(page.entities.len() <= 3);
        seen.extend(
            page.entities
                .iter()
                .map(|e| format!("{}/{}", e.partition_key, e.row_key)),
        );
        match page.continuation {
            Some(token) => continuation = Some(token),
            None => break,
        }
    }
    let expected: Vec<String> = ["a", "c"]
        .iter()
        .flat_map(|pk| ["02", "04", "06", "08"].map(|rk| format!("{pk}/{rk}")))
        .collect();
    assert_eq!(seen, expected);
    assert!(pages >= 3, "{pages} pages");

    let everything = s.tables.query("Instances", None, None, None).await.unwrap();
    assert_eq!(
        (everything.entities.len(), everything.continuation),
        (30, None)
    );
    let bad = s
        .tables
        .query("Instances", Some("RuntimeStatus eq"), None, None)
        .await
        .unwrap_err();
    assert!(matches!(bad, StorageError::Other(_)), "{bad:?}");
}

#[tokio::test]
async fn a_batch_writes_all_of_its_operations() {
    let azurite = Azurite::start();
    let s = storage(&azurite);
    s.tables.create_table("Hist").await.unwrap();
    let sentinel = s
        .tables
        .execute(
            "Hist",
            TableOp::Insert(Entity::new("i", "sentinel").with("N", 0)),
        )
        .await
        .unwrap();
    s.tables
        .execute("Hist", TableOp::Insert(Entity::new("i", "old")))
        .await
        .unwrap();
    s.tables
        .execute(
            "Hist",
            TableOp::Insert(Entity::new("i", "merged").with("Keep", 1)),
        )
        .await
        .unwrap();
    let before = s.calls().table;
    let etags = s
        .tables
        .batch(
            "Hist",
            vec![
                TableOp::Replace {
                    entity: Entity::new("i", "sentinel").with("N", 1),
                    etag: sentinel.unwrap(),
                },
                TableOp::Insert(Entity::new("i", "0001").with("E", "started")),
                TableOp::Upsert(Entity::new("i", "0002").with("E", "scheduled")),
                TableOp::Merge(Entity::new("i", "merged").with("Add", 2)),
                TableOp::Delete {
                    partition_key: "i".into(),
                    row_key: "old".into(),
                    etag: None,
                },
            ],
        )
        .await
        .unwrap();
    assert_eq!(s.calls().table - before, 1, "one transaction is one call");
    let rows = s.tables.query_partition("Hist", "i").await.unwrap();
    let keys: Vec<_> = rows.iter().map(|e| e.row_key.as_str()).collect();
    assert_eq!(keys, ["0001", "0002", "merged", "sentinel"]);
    assert_eq!(
        (rows[2].i64("Keep"), rows[2].i64("Add")),
        (Some(1), Some(2))
    );
    assert_eq!(rows[3].i64("N"), Some(1));
    // The batch answers each write's new ETag (none for the delete): the same
    // ETag a read gives, and good for the next conditional write.
    assert_eq!(etags.len(), 5);
    assert!(etags[..4].iter().all(Option::is_some), "{etags:?}");
    assert_eq!(etags[4], None);
    assert_eq!(etags[0], rows[3].etag, "the sentinel's new ETag");
    let before_replace = s.calls().table;
    s.tables
        .batch(
            "Hist",
            vec![TableOp::Replace {
                entity: Entity::new("i", "sentinel").with("N", 2),
                etag: etags[0].clone().unwrap(),
            }],
        )
        .await
        .unwrap();
    assert_eq!(s.calls().table - before_replace, 1);
    s.tables.batch("Hist", Vec::new()).await.unwrap();
    assert_eq!(
        s.calls().table - before,
        3,
        "the batch, the query, the second batch; an empty batch makes no call"
    );
}

#[tokio::test]
async fn a_batch_with_a_stale_etag_writes_nothing() {
    let azurite = Azurite::start();
    let s = storage(&azurite);
    s.tables.create_table("Hist").await.unwrap();
    let first = s
        .tables
        .execute(
            "Hist",
            TableOp::Insert(Entity::new("i", "sentinel").with("N", 0)),
        )
        .await
        .unwrap()
        .unwrap();
    // Someone else checkpoints first.
    let replace = |n: i64, etag: &str| TableOp::Replace {
        entity: Entity::new("i", "sentinel").with("N", n),
        etag: etag.to_string(),
    };
    s.tables.execute("Hist", replace(1, &first)).await.unwrap();
    let ops = vec![
        TableOp::Insert(Entity::new("i", "0001")),
        replace(2, &first),
        TableOp::Insert(Entity::new("i", "0002")),
    ];
    let error = s.tables.batch("Hist", ops).await.unwrap_err();
    assert!(
        matches!(&error, StorageError::Conflict(m) if m.contains("'Hist'")),
        "{error:?}"
    );
    let rows = s.tables.query_partition("Hist", "i").await.unwrap();
    assert_eq!(rows.len(), 1, "only the sentinel: {rows:?}");
    assert_eq!(rows[0].i64("N"), Some(1));

    // An insert of an existing row fails the batch the same way.
    let ops = vec![
        TableOp::Insert(Entity::new("i", "0003")),
        TableOp::Insert(Entity::new("i", "sentinel")),
    ];
    assert!(matches!(
        s.tables.batch("Hist", ops).await,
        Err(StorageError::Conflict(_))
    ));
    assert!(s.tables.get("Hist", "i", "0003").await.unwrap().is_none());
}

#[tokio::test]
async fn a_batch_takes_100_writes_of_one_partition() {
    let azurite = Azurite::start();
    let s = storage(&azurite);
    s.tables.create_table("Big").await.unwrap();
    let ops = |n: usize, pk: &dyn Fn(usize) -> &'static str| -> Vec<TableOp> {
        (0..n)
            .map(|i| {
                TableOp::Insert(
                    Entity::new(pk(i), format!("{i:04}")).with("Payload", "x".repeat(1000)),
                )
            })
            .collect()
    };
    s.tables.batch("Big", ops(100, &|_| "p")).await.unwrap();
    assert_eq!(
        s.tables.query_partition("Big", "p").await.unwrap().len(),
        100
    );

    let calls = s.calls();
    let too_many = s.tables.batch("Big", ops(101, &|_| "q")).await.unwrap_err();
    assert!(
        matches!(&too_many, StorageError::Other(m) if m.contains("at most 100")),
        "{too_many:?}"
    );
    let mixed = s
        .tables
        .batch("Big", ops(2, &|i| if i == 0 { "q" } else { "r" }))
        .await
        .unwrap_err();
    assert!(
        matches!(&mixed, StorageError::Other(m) if m.contains("one partition")),
        "{mixed:?}"
    );
    assert_eq!(s.calls(), calls, "refused before any call");
}

// ---- blobs ----

#[tokio::test]
async fn blobs_are_written_read_listed_and_deleted() {
    let azurite = Azurite::start();
    let s = storage(&azurite);
    s.blobs.create_container("hub-largemessages").await.unwrap();
    s.blobs.create_container("hub-largemessages").await.unwrap(); // again: still fine
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    s.blobs
        .put("hub-largemessages", "inst/a.json.gz", big.clone())
        .await
        .unwrap();
    s.blobs
        .put("hub-largemessages", "inst/b", b"bee".to_vec())
        .await
        .unwrap();
    s.blobs
        .put("hub-largemessages", "other", Vec::new())
        .await
        .unwrap();

    let before = s.calls().blob;
    let (data, etag) = s
        .blobs
        .get("hub-largemessages", "inst/a.json.gz")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.calls().blob - before, 1, "one read for 3 MB");
    assert!(data == big && !etag.contains('"'));
    assert_eq!(
        s.blobs
            .get("hub-largemessages", "other")
            .await
            .unwrap()
            .unwrap()
            .0,
        b""
    );
    assert_eq!(
        s.blobs.get("hub-largemessages", "missing").await.unwrap(),
        None
    );
    let no_container = s.blobs.get("nosuchcontainer", "x").await.unwrap_err();
    assert!(
        matches!(no_container, StorageError::NotFound(_)),
        "{no_container:?}"
    );

    let conflict = s
        .blobs
        .put_if_absent("hub-largemessages", "inst/b", b"new".to_vec())
        .await
        .unwrap_err();
    assert!(
        matches!(&conflict, StorageError::Conflict(m) if m.contains("hub-largemessages/inst/b")),
        "{conflict:?}"
    );
    s.blobs
        .put_if_absent("hub-largemessages", "inst/c", b"sea".to_vec())
        .await
        .unwrap();
    assert_eq!(
        s.blobs
            .get("hub-largemessages", "inst/b")
            .await
            .unwrap()
            .unwrap()
            .0,
        b"bee"
    );

    // Conditional replace: only over the version read (the key store's writes).
    let (_, c_etag) = s
        .blobs
        .get("hub-largemessages", "inst/c")
        .await
        .unwrap()
        .unwrap();
    s.blobs
        .put_if_match("hub-largemessages", "inst/c", b"sea2".to_vec(), &c_etag)
        .await
        .unwrap();
    let stale = s
        .blobs
        .put_if_match("hub-largemessages", "inst/c", b"sea3".to_vec(), &c_etag)
        .await
        .unwrap_err();
    assert!(matches!(stale, StorageError::Conflict(_)), "{stale:?}");
    assert_eq!(
        s.blobs
            .get("hub-largemessages", "inst/c")
            .await
            .unwrap()
            .unwrap()
            .0,
        b"sea2"
    );

    let listed = s.blobs.list("hub-largemessages", "inst/").await.unwrap();
    let names: Vec<_> = listed.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["inst/a.json.gz", "inst/b", "inst/c"]);
    assert_eq!(listed[0].1, etag, "listed and read ETags compare equal");
    assert_eq!(
        s.blobs.list("hub-largemessages", "").await.unwrap().len(),
        4
    );

    s.blobs.delete("hub-largemessages", "inst/b").await.unwrap();
    assert!(matches!(
        s.blobs.delete("hub-largemessages", "inst/b").await,
        Err(StorageError::NotFound(_))
    ));
    assert_eq!(
        s.blobs
            .list("hub-largemessages", "inst/")
            .await
            .unwrap()
            .len(),
        2
    );
    s.blobs.delete_container("hub-largemessages").await.unwrap();
    assert!(matches!(
        s.blobs.delete_container("hub-largemessages").await,
        Err(StorageError::NotFound(_))
    ));
}

#[tokio::test]
async fn a_blob_lease_has_one_holder_at_a_time() {
    let azurite = Azurite::start();
    let s = storage(&azurite);
    s.blobs.create_container("hub-leases").await.unwrap();
    s.blobs
        .put("hub-leases", "hub-control-00", Vec::new())
        .await
        .unwrap();
    let lease = Duration::from_secs(15);
    let mine = s
        .blobs
        .acquire_lease("hub-leases", "hub-control-00", lease)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        s.blobs
            .acquire_lease("hub-leases", "hub-control-00", lease)
            .await
            .unwrap(),
        None
    );
    assert!(
        s.blobs
            .renew_lease("hub-leases", "hub-control-00", &mine)
            .await
            .unwrap()
    );
    s.blobs
        .release_lease("hub-leases", "hub-control-00", &mine)
        .await
        .unwrap();

    let theirs = s
        .blobs
        .acquire_lease("hub-leases", "hub-control-00", lease)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(theirs, mine);
    assert!(
        !s.blobs
            .renew_lease("hub-leases", "hub-control-00", &mine)
            .await
            .unwrap(),
        "lost"
    );
    let release = s
        .blobs
        .release_lease("hub-leases", "hub-control-00", &mine)
        .await
        .unwrap_err();
    assert!(matches!(release, StorageError::Conflict(_)), "{release:?}");

    let missing = s
        .blobs
        .acquire_lease("hub-leases", "nosuchblob", lease)
        .await
        .unwrap_err();
    assert!(matches!(missing, StorageError::NotFound(_)), "{missing:?}");
    let short = s
        .blobs
        .acquire_lease("hub-leases", "hub-control-00", Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(
        matches!(&short, StorageError::Other(m) if m.contains("15-60 s")),
        "{short:?}"
    );
    let forever = s
        .blobs
        .acquire_lease("hub-leases", "hub-control-01", Duration::MAX)
        .await;
    assert!(
        matches!(forever, Err(StorageError::NotFound(_))),
        "{forever:?}"
    );
    s.blobs
        .put("hub-leases", "hub-control-01", Vec::new())
        .await
        .unwrap();
    let forever = s
        .blobs
        .acquire_lease("hub-leases", "hub-control-01", Duration::MAX)
        .await
        .unwrap()
        .unwrap();
    assert!(
        s.blobs
            .renew_lease("hub-leases", "hub-control-01", &forever)
            .await
            .unwrap()
    );
}

// ---- counts, connection strings, probe ----

#[tokio::test]
async fn every_call_is_counted_by_service() {
    let azurite = Azurite::start();
    let s = storage(&azurite);
    assert_eq!(s.calls(), counts(0, 0, 0));
    s.queues.create_queue("qqq").await.unwrap();
    s.queues.send("qqq", "m", Duration::ZERO).await.unwrap();
    let got = s
        .queues
        .receive("qqq", 32, Duration::from_secs(30))
        .await
        .unwrap();
    s.queues.delete("qqq", &got[0]).await.unwrap();
    assert_eq!(s.calls(), counts(4, 0, 0));
    s.tables.create_table("Tab").await.unwrap();
    s.tables
        .execute("Tab", TableOp::Upsert(Entity::new("p", "r")))
        .await
        .unwrap();
    s.tables.get("Tab", "p", "r").await.unwrap();
    assert_eq!(s.calls(), counts(4, 3, 0));
    s.blobs.create_container("ccc").await.unwrap();
    s.blobs.put("ccc", "b", b"x".to_vec()).await.unwrap();
    s.blobs.get("ccc", "b").await.unwrap();
    s.blobs.list("ccc", "").await.unwrap();
    assert_eq!(s.calls(), counts(4, 3, 4));
    assert_eq!(s.calls().total(), 11);
    // Failures count too; a clone of the Storage shares the counters.
    let clone = s.clone();
    clone
        .queues
        .approximate_count("nosuchqueue")
        .await
        .unwrap_err();
    assert_eq!(s.calls(), counts(5, 3, 4));
}

#[test]
fn malformed_connection_strings_say_what_is_missing() {
    let error = |cs: &str| match connect(cs) {
        Err(StorageError::Other(m)) => m,
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("{cs:?} was accepted"),
    };
    assert!(error("").contains("empty"));
    assert!(error("AccountName=acct;EndpointSuffix=core.windows.net").contains("AccountKey"));
    assert!(
        error(&format!(
            "AccountKey={};BlobEndpoint=http://x",
            azurite::DEV_KEY
        ))
        .contains("AccountName")
    );
    assert!(error("UseDevelopmentStorage=maybe").contains("UseDevelopmentStorage"));
    assert!(error("AccountName=acct;Key=abc").contains("\"Key\""));
    assert!(connect("UseDevelopmentStorage=true").is_ok());
}

#[tokio::test]
async fn probe_passes_with_one_read_per_service() {
    let azurite = Azurite::start();
    let s = storage(&azurite);
    probe(&s).await.unwrap();
    assert_eq!(s.calls(), counts(1, 1, 1));
}

#[tokio::test]
async fn probe_of_a_closed_port_fails_fast_in_one_line() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}/devstoreaccount1");
    let s = connect(&format!(
        "AccountName=devstoreaccount1;AccountKey={};BlobEndpoint={endpoint};QueueEndpoint={endpoint};TableEndpoint={endpoint}",
        azurite::DEV_KEY
    ))
    .unwrap();
    let started = Instant::now();
    let error = probe(&s).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    let StorageError::Unavailable(message) = &error else {
        panic!("{error:?}")
    };
    assert!(!message.contains('\n'), "{message}");
    assert!(
        message.starts_with(&format!("cannot reach the queue service at {endpoint}")),
        "{message}"
    );
    assert!(
        message.contains("QueueEndpoint") && message.ends_with("after retrying"),
        "{message}"
    );
    // Each service was tried 5 times (0.75 s of pauses).
    assert_eq!(s.calls(), counts(5, 5, 5));

    // For UseDevelopmentStorage=true the line says how to start Azurite.
    let dev = connect("UseDevelopmentStorage=true").unwrap();
    if std::net::TcpStream::connect("127.0.0.1:10001").is_err() {
        let error = probe(&dev).await.unwrap_err().to_string();
        assert!(
            error.starts_with(
                "storage unavailable: cannot reach Azurite at 127.0.0.1:10000-10002 (UseDevelopmentStorage=true): \
                 start it with `npx azurite --silent --location .azurite` (./dev start does this)"
            ),
            "{error}"
        );
    }
}

/// The owner of an instance writes its status row with the ETag of its last
/// write and the history's sequence. A former owner (a host paused past its
/// lease) that writes later with an older sequence keeps nothing: the newer
/// owner's status stays.
#[tokio::test]
async fn a_former_owner_never_overwrites_a_newer_status_row() {
    use host::durable::hub::Hub;
    use host::durable::instances::{Guard, get, write};
    use host::durable::model::{InstanceRow, RuntimeStatus};

    let azurite = Azurite::start();
    let hub = Hub::new("RowHub", 4, storage(&azurite));
    hub.create().await.unwrap();
    let row = |status: RuntimeStatus, output: &str| InstanceRow {
        instance_id: "split".into(),
        name: "Orch".into(),
        execution_id: "e1".into(),
        status,
        input: None,
        output: Some(output.into()),
        custom_status: None,
        created: 1,
        last_updated: 2,
        completed: None,
    };
    // The old owner writes at sequence 5 and remembers its ETag.
    let old_etag = write(
        &hub,
        &row(RuntimeStatus::Running, "\"old\""),
        5,
        Guard::None,
    )
    .await
    .unwrap()
    .expect("written");
    // Its partition moves; the new owner, further on (sequence 9), writes over it.
    write(
        &hub,
        &row(RuntimeStatus::Completed, "\"new\""),
        9,
        Guard::None,
    )
    .await
    .unwrap()
    .expect("written");
    // The old owner wakes up and writes what it had, guarded by its old ETag.
    let kept = write(
        &hub,
        &row(RuntimeStatus::Running, "\"stale\""),
        6,
        Guard::Etag(old_etag),
    )
    .await
    .unwrap();
    assert!(kept.is_none(), "the stale write is refused");
    let now = get(&hub, "split").await.unwrap().unwrap();
    assert_eq!(now.status, RuntimeStatus::Completed);
    assert_eq!(now.output.as_deref(), Some("\"new\""));
}
