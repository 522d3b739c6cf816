//! The store against a real sled on disk.

use std::collections::BTreeSet;

use gridnode_store::query::Filter;
use gridnode_store::{
    Error, FunctionEntry, Page, SCHEMA_VERSION, Store, StoreConfig, ToolEntry, sha256_hex,
};
use proptest::prelude::*;
use serde_json::{Value, json};

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(&StoreConfig::new(dir.path().join("db"), "node-a")).unwrap()
}

fn tool(id: &str, tool_type: &str, tags: &[&str]) -> ToolEntry {
    ToolEntry {
        tool_id: id.into(),
        tool_type: tool_type.into(),
        tool_tags: tags.iter().map(|t| t.to_string()).collect(),
        ..ToolEntry::default()
    }
}

/// A tool with every field set to something non-empty.
fn full_tool() -> ToolEntry {
    serde_json::from_value(json!({
        "tool_id": "tool-nlp-01",
        "tool_metadata": {"language": "en", "version": "v1.0", "nested": {"n": [1, 2.5, null, true, -7, 18446744073709551615u64, 1e300, [], {}]}},
        "tool_search_description": "A tool for extracting named entities.",
        "tool_tags": ["nlp", "text"],
        "tool_type": "extractor",
        "tool_man_page_doc": "# NER\nUse it.",
        "tool_api_spec": {"text": "string"},
        "tool_custom_actions_dsl_map": {"a": {"b": "c"}},
        "default_tool_usage_credentials": {"token": "s3cret"},
        "tool_execution_mode": "sync",
        "tool_policy_rule_uri": "policies://validate/compliance",
        "tool_source_code_link": "http://x/blobs/abc",
        "tool_service_url": "http://svc",
        "tool_system_function_rpc_id": "reverse_text",
        "tool_validation_policy_rule_uri": "policies://v",
        "tool_validation_mode": "strict"
    }))
    .unwrap()
}

/// Runs `write(store, thread, i)` for `each` values of `i` in each of `threads` threads at once.
fn in_threads(store: &Store, threads: usize, each: usize, write: fn(&Store, usize, usize)) {
    let handles: Vec<_> = (0..threads)
        .map(|w| {
            let store = store.clone();
            std::thread::spawn(move || (0..each).for_each(|i| write(&store, w, i)))
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
}

fn ids(tools: &[ToolEntry]) -> Vec<&str> {
    tools.iter().map(|t| t.tool_id.as_str()).collect()
}

#[test]
fn every_field_round_trips_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let tool = full_tool();
    let function: FunctionEntry = serde_json::from_value(json!({
        "function_id": "predict_abc_v2",
        "function_metadata": {"owner": "teamX"},
        "function_search_description": "forecast demand",
        "function_tags": ["analytics", "forecast"],
        "function_type": "model",
        "function_man_page_doc": "doc",
        "function_api_spec": {"x": "number"},
        "func_custom_actions_dsl_map": {"k": 1},
        "default_func_usage_credentials": {"key": "v"},
        "open_api_spec": {"openapi": "3.0.0", "servers": [{"url": "http://f"}]},
        "api_parameters_to_cost_relation_data": {"per_call": 0.5},
        "is_system_action": true,
        "function_source_code_link": "http://x/blobs/def"
    }))
    .unwrap();
    {
        let store = open(&dir);
        store.create(&tool).unwrap();
        store.create(&function).unwrap();
        assert_eq!(store.get::<ToolEntry>("tool-nlp-01").unwrap(), tool);
    }
    let store = open(&dir);
    assert_eq!(store.get::<ToolEntry>("tool-nlp-01").unwrap(), tool);
    assert_eq!(store.get::<FunctionEntry>("predict_abc_v2").unwrap(), function);
    assert_eq!(store.last_seq(), 2);
}

#[test]
fn create_conflicts_and_delete_leaves_a_tombstone_that_create_may_reuse() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.create(&tool("t1", "a", &[])).unwrap();
    assert!(matches!(store.create(&tool("t1", "b", &[])), Err(Error::Conflict { .. })));
    assert_eq!(store.get::<ToolEntry>("t1").unwrap().tool_type, "a");

    let deleted = store.delete::<ToolEntry>("t1").unwrap();
    assert!(matches!(store.get::<ToolEntry>("t1"), Err(Error::NotFound { .. })));
    assert!(matches!(store.delete::<ToolEntry>("t1"), Err(Error::NotFound { .. })));
    let envelope = store.envelope::<ToolEntry>("t1").unwrap().unwrap();
    assert!(envelope.header.tombstone);
    assert_eq!(envelope.header.hlc, deleted.hlc);
    assert_eq!(store.count::<ToolEntry>().unwrap(), 0);
    assert!(store.list::<ToolEntry>(Page::ALL).unwrap().is_empty());

    store.create(&tool("t1", "c", &[])).unwrap();
    assert_eq!(store.get::<ToolEntry>("t1").unwrap().tool_type, "c");
}

#[test]
fn versions_increase_and_the_feed_follows_commit_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let a = store.create(&tool("a", "x", &[])).unwrap();
    let b = store.update::<ToolEntry>("a", |mut t| {
        t.tool_type = "y".into();
        Ok(t)
    });
    assert_eq!(b.unwrap().tool_type, "y");
    let c = store.delete::<ToolEntry>("a").unwrap();
    assert!(c.hlc > a.hlc);
    assert_eq!(c.hlc.node, "node-a");
    let feed = store.changes_since(0, 100).unwrap();
    assert_eq!(feed.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert!(feed[2].tombstone && !feed[0].tombstone);
    assert!(feed.windows(2).all(|w| w[0].hlc < w[1].hlc));
    assert_eq!(store.changes_since(2, 100).unwrap().len(), 1);
    assert_eq!(store.changes_since(1, 1).unwrap()[0].seq, 2);

    // A reopened store continues both the sequence and the clock.
    drop(store);
    let store = open(&dir);
    let d = store.create(&tool("b", "x", &[])).unwrap();
    assert_eq!(d.seq, 4);
    assert!(d.hlc > c.hlc);
}

#[test]
fn update_cannot_change_the_id_or_break_validation() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.create(&tool("a", "x", &[])).unwrap();
    let err = store
        .update::<ToolEntry>("a", |mut t| {
            t.tool_id = "b".into();
            Ok(t)
        })
        .unwrap_err();
    assert!(err.to_string().contains("immutable"), "{err}");
    assert!(matches!(
        store.update::<ToolEntry>("missing", Ok),
        Err(Error::NotFound { kind: "tool", .. })
    ));
    assert!(store.try_get::<ToolEntry>("b").unwrap().is_none());
    assert_eq!(store.last_seq(), 1, "failed updates write nothing");
}

#[test]
fn invalid_ids_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    for id in ["", "../x", "/etc/x", "a b", &"x".repeat(200)] {
        assert!(matches!(store.create(&tool(id, "x", &[])), Err(Error::Invalid(_))), "{id}");
    }
    assert_eq!(store.last_seq(), 0);
}

#[test]
fn index_lookups_by_type_tag_and_flag() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.create(&tool("t1", "extractor", &["nlp", "text"])).unwrap();
    store.create(&tool("t2", "extractor", &["image"])).unwrap();
    store.create(&tool("t3", "monitor", &["nlp"])).unwrap();
    let by_type = store.find::<ToolEntry>("tool_type", &json!("extractor"), Page::ALL).unwrap();
    assert_eq!(ids(&by_type), ["t1", "t2"]);
    let by_tag = store.find::<ToolEntry>("tool_tags", &json!("nlp"), Page::ALL).unwrap();
    assert_eq!(ids(&by_tag), ["t1", "t3"]);
    let paged = store.find::<ToolEntry>("tool_tags", &json!("nlp"), Page::new(1, 5)).unwrap();
    assert_eq!(ids(&paged), ["t3"]);
    assert!(store.find::<ToolEntry>("tool_service_url", &json!("x"), Page::ALL).is_err());

    let f = |id: &str, system: bool| FunctionEntry {
        function_id: id.into(),
        is_system_action: system,
        ..FunctionEntry::default()
    };
    store.create(&f("f1", true)).unwrap();
    store.create(&f("f2", false)).unwrap();
    let system = store.find::<FunctionEntry>("is_system_action", &json!(true), Page::ALL).unwrap();
    assert_eq!(system.len(), 1);
    assert_eq!(system[0].function_id, "f1");
    let as_text = store.find::<FunctionEntry>("is_system_action", &json!("true"), Page::ALL);
    assert!(as_text.unwrap().is_empty(), "the index keeps the value's type");
}

#[test]
fn blobs_are_content_addressed_and_written_with_their_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let sha = store.put_blob(b"hello").unwrap();
    assert_eq!(sha, sha256_hex(b"hello"));
    assert_eq!(sha, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
    assert_eq!(&store.get_blob(&sha).unwrap().unwrap()[..], b"hello");
    assert!(store.get_blob(&"0".repeat(64)).unwrap().is_none());
    assert!(matches!(store.get_blob("../../etc/passwd"), Err(Error::Invalid(_))));

    // A record that conflicts takes its blob down with it.
    store.create(&tool("t", "x", &[])).unwrap();
    let err = store.create_with_blob(&tool("t", "y", &[]), Some(b"orphan".to_vec())).unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }));
    assert!(store.get_blob(&sha256_hex(b"orphan")).unwrap().is_none());
    store.create_with_blob(&tool("u", "y", &[]), Some(b"code".to_vec())).unwrap();
    assert!(store.get_blob(&sha256_hex(b"code")).unwrap().is_some());
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(&dir));
    {
        let db = sled::open(dir.path().join("db")).unwrap();
        let meta = db.open_tree("meta").unwrap();
        meta.insert("schema_version", &(SCHEMA_VERSION + 1).to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let err = Store::open(&StoreConfig::new(dir.path().join("db"), "n")).unwrap_err();
    assert!(matches!(err, Error::Schema { .. }), "{err}");
}

#[test]
fn queries_use_the_filter_and_agree_with_a_scan() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    for i in 0..40 {
        let mut t =
            tool(&format!("t{i:02}"), if i % 2 == 0 { "extractor" } else { "monitor" }, &[]);
        t.tool_tags = vec![format!("g{}", i % 3)];
        t.tool_metadata.insert("version".into(), json!(i));
        store.create(&t).unwrap();
    }
    let run = |filter: Value| {
        let filter = Filter::parse(&filter).unwrap();
        ids(&store.query::<ToolEntry>(&filter, Page::ALL).unwrap())
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    // Indexed equality plus a residual condition.
    let got = run(json!({"tool_type": "extractor", "tool_metadata.version": {"$gte": 30}}));
    assert_eq!(got, ["t30", "t32", "t34", "t36", "t38"]);
    // Same result whether or not the index is used ($or hides the hint).
    let via_or =
        run(json!({"$or": [{"tool_type": "extractor"}], "tool_metadata.version": {"$gte": 30}}));
    assert_eq!(got, via_or);
    assert_eq!(run(json!({})).len(), 40);
    assert_eq!(run(json!({"tool_tags": "g1", "tool_type": "monitor"})).len(), 7);
}

#[test]
fn concurrent_writers_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    in_threads(&store, 8, 25, |store, w, i| {
        store.create(&tool(&format!("w{w}-{i}"), "x", &["t"])).unwrap();
    });
    assert_eq!(store.count::<ToolEntry>().unwrap(), 200);
    assert_eq!(store.find::<ToolEntry>("tool_tags", &json!("t"), Page::ALL).unwrap().len(), 200);
    let seqs: Vec<u64> = store.changes_since(0, 1000).unwrap().iter().map(|c| c.seq).collect();
    assert_eq!(seqs, (1..=200).collect::<Vec<_>>());
}

#[derive(Debug, Clone)]
enum Op {
    Put { id: u8, tool_type: u8, tags: Vec<u8> },
    Delete { id: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..6, 0u8..3, prop::collection::vec(0u8..4, 0..3))
            .prop_map(|(id, tool_type, tags)| { Op::Put { id, tool_type, tags } }),
        (0u8..6).prop_map(|id| Op::Delete { id }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// After any sequence of puts and deletes, every index lookup returns exactly the records a
    /// scan finds, also after the store is closed and reopened.
    #[test]
    fn indexes_agree_with_records(ops in prop::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(&dir);
            for op in &ops {
                match op {
                    Op::Put { id, tool_type, tags } => {
                        let tags: Vec<String> = tags.iter().map(|t| format!("tag{t}")).collect();
                        let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
                        store.put(&tool(&format!("t{id}"), &format!("type{tool_type}"), &tags)).unwrap();
                    }
                    Op::Delete { id } => {
                        let _ = store.delete::<ToolEntry>(&format!("t{id}"));
                    }
                }
            }
        }
        let store = open(&dir);
        let all = store.list::<ToolEntry>(Page::ALL).unwrap();
        for n in 0..3 {
            let tool_type = format!("type{n}");
            let expected: BTreeSet<&str> = all.iter().filter(|t| t.tool_type == tool_type).map(|t| t.tool_id.as_str()).collect();
            let found = store.find::<ToolEntry>("tool_type", &json!(tool_type), Page::ALL).unwrap();
            prop_assert_eq!(found.iter().map(|t| t.tool_id.as_str()).collect::<BTreeSet<_>>(), expected);
        }
        for n in 0..4 {
            let tag = format!("tag{n}");
            let expected: BTreeSet<&str> = all.iter().filter(|t| t.tool_tags.contains(&tag)).map(|t| t.tool_id.as_str()).collect();
            let found = store.find::<ToolEntry>("tool_tags", &json!(tag), Page::ALL).unwrap();
            prop_assert_eq!(found.iter().map(|t| t.tool_id.as_str()).collect::<BTreeSet<_>>(), expected);
        }
    }

    /// Any tool survives the disk format unchanged.
    #[test]
    fn any_tool_round_trips(
        id in "[a-z0-9][a-z0-9._:@-]{0,20}",
        text in any::<String>(),
        tags in prop::collection::vec(any::<String>(), 0..4),
        meta in prop::collection::btree_map("[a-z]{1,5}", prop_oneof![any::<i64>().prop_map(Value::from), any::<String>().prop_map(Value::from), any::<bool>().prop_map(Value::from)], 0..4),
    ) {
        let store = Store::open(&StoreConfig::temporary("n")).unwrap();
        let mut t = tool(&id, &text, &[]);
        t.tool_tags = tags;
        t.tool_man_page_doc = text.clone();
        t.tool_metadata = meta.into_iter().collect();
        store.create(&t).unwrap();
        prop_assert_eq!(store.get::<ToolEntry>(&id).unwrap(), t);
    }
}

#[tokio::test]
async fn followers_wake_on_every_commit_and_resume_from_a_sequence_number() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut feed = store.subscribe();
    assert_eq!(*feed.borrow_and_update(), 0);
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            for i in 0..3 {
                store.create(&tool(&format!("t{i}"), "x", &[])).unwrap();
            }
        })
    };
    let mut followed = 0;
    let mut seen = Vec::new();
    while followed < 3 {
        tokio::time::timeout(std::time::Duration::from_secs(10), feed.changed())
            .await
            .expect("the feed wakes its follower")
            .unwrap();
        let last = *feed.borrow_and_update();
        // The feed may already hold commits newer than the wake-up: take them all, in order.
        for change in store.changes_since(followed, 100).unwrap() {
            assert_eq!(change.seq, followed + 1, "no gaps, no repeats");
            followed = change.seq;
            seen.push(change.id);
        }
        assert!(followed >= last);
    }
    writer.join().unwrap();
    assert_eq!(seen, ["t0", "t1", "t2"]);
}

#[test]
fn headers_read_versions_without_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    assert!(store.header::<ToolEntry>("t").unwrap().is_none());
    let written = store.create(&tool("t", "x", &[])).unwrap();
    let header = store.header::<ToolEntry>("t").unwrap().unwrap();
    assert_eq!((header.hlc, header.tombstone), (written.hlc, false));
    let deleted = store.delete::<ToolEntry>("t").unwrap();
    let header = store.header::<ToolEntry>("t").unwrap().unwrap();
    assert_eq!((header.hlc, header.tombstone), (deleted.hlc, true));
}

#[test]
fn index_lookups_read_only_the_records_they_return() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(&dir);
        store.create(&tool("a", "extractor", &["nlp"])).unwrap();
        store.create(&tool("b", "monitor", &["nlp"])).unwrap();
    }
    {
        // A record no decoder can read: any scan that touches it fails.
        let db = sled::open(dir.path().join("db")).unwrap();
        db.open_tree("tools").unwrap().insert("zzz", &b"\xff\xff garbage"[..]).unwrap();
        db.flush().unwrap();
    }
    let store = open(&dir);
    assert!(matches!(store.list::<ToolEntry>(Page::ALL), Err(Error::Corrupt(_))));
    let found = store.find::<ToolEntry>("tool_type", &json!("extractor"), Page::ALL).unwrap();
    assert_eq!(ids(&found), ["a"]);
    let filter = Filter::parse(&json!({"tool_tags": "nlp", "tool_type": "monitor"})).unwrap();
    assert_eq!(ids(&store.query::<ToolEntry>(&filter, Page::ALL).unwrap()), ["b"]);
    let unindexed = Filter::parse(&json!({"tool_man_page_doc": ""})).unwrap();
    assert!(store.query::<ToolEntry>(&unindexed, Page::ALL).is_err(), "this one scans");
}

#[test]
fn versions_of_one_record_rise_with_concurrent_writers() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    in_threads(&store, 8, 20, |store, w, i| {
        store.put(&tool("same", &format!("w{w}-{i}"), &[])).unwrap();
    });
    let feed = store.changes_since(0, 1000).unwrap();
    assert_eq!(feed.len(), 160);
    assert!(feed.windows(2).all(|w| w[0].hlc < w[1].hlc), "versions follow commit order");
    let last = feed.last().unwrap();
    assert_eq!(store.header::<ToolEntry>("same").unwrap().unwrap().hlc, last.hlc);
    assert_eq!(store.last_seq(), last.seq);
}

#[test]
fn oversized_indexed_values_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let long = "x".repeat(gridnode_store::MAX_INDEXED_VALUE_LEN + 1);
    let err = store.create(&tool("a", &long, &[])).unwrap_err();
    assert!(err.to_string().contains("tool_type"), "{err}");
    let tags: Vec<String> = (0..300).map(|i| format!("t{i}")).collect();
    let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
    assert!(matches!(store.create(&tool("b", "x", &tags)), Err(Error::Invalid(_))));
    assert_eq!(store.last_seq(), 0);
}

#[test]
fn the_audit_log_appends_in_order_filters_and_keeps_a_bounded_tail() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreConfig::new(dir.path().join("s"), "n1")).unwrap();
    let entry = |org: &str, tool: &str| gridnode_store::AuditEntry {
        seq: 0,
        time_ms: 1,
        org: org.into(),
        kind: gridnode_store::AuditKind::Tool,
        tool: tool.into(),
        action: String::new(),
        node: "n1".into(),
        success: true,
        status: 200,
        duration_ms: 3,
        input_bytes: 10,
        operation: "execute".into(),
        token: String::new(),
    };
    for i in 0..500u64 {
        let org = if i % 2 == 0 { "even" } else { "odd" };
        let (seq, over) = store.append_audit(&entry(org, &format!("t{}", i % 5)), 100).unwrap();
        assert_eq!(seq, i + 1);
        // Past `keep` plus the slack (keep / 16), the caller trims.
        assert_eq!(over, store.audit_len().unwrap() > 106, "{seq}");
        if over {
            store.trim_audit(100).unwrap();
        }
    }
    let held = store.audit_len().unwrap();
    assert!((100..=106).contains(&held), "{held}");
    assert_eq!(store.trim_audit(100).unwrap(), held - 100);
    assert_eq!(store.audit_len().unwrap(), 100);
    let query = |org: Option<&str>, tool: Option<&str>, limit| gridnode_store::AuditQuery {
        org: org.map(Into::into),
        tool: tool.map(Into::into),
        limit,
    };
    let newest = store.audit(&query(None, None, 3)).unwrap();
    assert_eq!(newest.iter().map(|e| e.seq).collect::<Vec<_>>(), [500, 499, 498]);
    let odd = store.audit(&query(Some("odd"), Some("t4"), 1000)).unwrap();
    assert!(!odd.is_empty() && odd.iter().all(|e| e.org == "odd" && e.tool == "t4"));
    drop(store);
    // Sequence numbers continue after a restart.
    let store = Store::open(&StoreConfig::new(dir.path().join("s"), "n1")).unwrap();
    assert_eq!(store.append_audit(&entry("x", "y"), 100).unwrap().0, 501);

    // A batch takes the next numbers, in its order, and says when the log is over.
    let mut batch: Vec<_> = (0..5).map(|i| entry("batch", &format!("b{i}"))).collect();
    assert!(!store.append_audit_batch(&mut batch, 100).unwrap(), "101 + 5 entries: within");
    assert_eq!(batch.iter().map(|e| e.seq).collect::<Vec<_>>(), [502, 503, 504, 505, 506]);
    let newest = store.audit(&query(Some("batch"), None, 2)).unwrap();
    assert_eq!(newest.iter().map(|e| e.tool.as_str()).collect::<Vec<_>>(), ["b4", "b3"]);
    assert!(store.append_audit_batch(&mut [entry("batch", "b5")], 100).unwrap(), "107: over");
    assert!(!store.append_audit_batch(&mut [], 1000).unwrap());
}

#[test]
fn actions_and_allow_lists_are_records_with_checked_keys() {
    let store = Store::open(&StoreConfig::temporary("n1")).unwrap();
    let action = gridnode_store::Action {
        action_type: "pick".into(),
        mapping_org_id: "acme".into(),
        tool_ids: vec!["t1".into()],
        ..Default::default()
    };
    store.create(&action).unwrap();
    assert!(matches!(store.create(&action), Err(gridnode_store::Error::Conflict { .. })));
    let got: gridnode_store::Action = store.get("acme/pick").unwrap();
    assert_eq!(got, action);
    for bad in [
        gridnode_store::Action { tool_ids: vec![], ..action.clone() },
        gridnode_store::Action { tool_ids: vec!["a b".into()], ..action.clone() },
        gridnode_store::Action { mapping_org_id: "".into(), ..action.clone() },
        gridnode_store::Action { action_type: "x/y".into(), ..action.clone() },
    ] {
        assert!(store.create(&bad).is_err(), "{bad:?}");
    }
    let list =
        gridnode_store::AllowList { org_id: "acme".into(), allowed_tools: vec!["t1".into()] };
    store.put(&list).unwrap();
    assert!(store.get::<gridnode_store::AllowList>("acme").unwrap().allows("t1"));
    let bad =
        gridnode_store::AllowList { org_id: "acme".into(), allowed_tools: vec!["../x".into()] };
    assert!(store.put(&bad).is_err());
}
