//! The search index against a real store and a real index directory on disk.

use std::sync::Arc;
use std::time::Duration;

use gridnode_search::{Error, SearchIndex, SearchRequest, follow};
use gridnode_store::{Collection, FunctionEntry, Page, Store, StoreConfig, ToolEntry};
use serde_json::json;

struct Fixture {
    dir: tempfile::TempDir,
    store: Store,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreConfig::new(dir.path().join("store"), "n")).unwrap();
        Fixture { dir, store }
    }

    fn index_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("index")
    }

    fn open(&self) -> SearchIndex {
        SearchIndex::open(&self.index_dir(), self.store.clone()).unwrap()
    }

    fn tool(&self, id: &str, description: &str, man_page: &str, tags: &[&str]) {
        let tool = ToolEntry {
            tool_id: id.into(),
            tool_search_description: description.into(),
            tool_man_page_doc: man_page.into(),
            tool_tags: tags.iter().map(|t| t.to_string()).collect(),
            tool_type: "extractor".into(),
            ..ToolEntry::default()
        };
        self.store.put(&tool).unwrap();
    }
}

fn search(index: &SearchIndex, text: &str) -> Vec<String> {
    let request = SearchRequest { text, kind: None, page: Page::new(0, 100), snippets: false };
    index.search(&request).unwrap().into_iter().map(|h| h.id).collect()
}

#[test]
fn the_description_outranks_a_single_mention_in_the_man_page() {
    let f = Fixture::new();
    f.tool("mentions", "an unrelated tool", "somewhere it says model once", &[]);
    f.tool("llm", "This is a large language model tool.", "", &[]);
    f.tool("noise", "image resizer", "pixels", &[]);
    let index = f.open();
    assert_eq!(search(&index, "large language model"), ["llm", "mentions"]);
    assert_eq!(search(&index, "model"), ["llm", "mentions"]);
    // Case-insensitive and stemmed: "Models" finds "model".
    assert_eq!(search(&index, "MODELS"), ["llm", "mentions"]);
}

#[test]
fn ids_tags_and_types_match_exactly_and_kinds_filter() {
    let f = Fixture::new();
    f.tool("tool-nlp-01", "named entities", "", &["NLP", "text"]);
    f.tool("other", "nothing in common", "", &["image"]);
    let function = FunctionEntry {
        function_id: "predict".into(),
        function_search_description: "named entities forecast".into(),
        function_metadata: json!({"owner": "teamX", "nested": {"version": 7}})
            .as_object()
            .unwrap()
            .clone(),
        ..FunctionEntry::default()
    };
    f.store.put(&function).unwrap();
    let index = f.open();
    assert_eq!(search(&index, "tag:nlp"), ["tool-nlp-01"]);
    assert_eq!(search(&index, "id:TOOL-NLP-01"), ["tool-nlp-01"]);
    assert_eq!(search(&index, "teamx"), ["predict"], "metadata values are searchable");
    assert_eq!(search(&index, "meta:7"), ["predict"]);
    let only = |kind| SearchRequest {
        text: "named entities",
        kind: Some(kind),
        page: Page::ALL,
        snippets: true,
    };
    let tools = index.search(&only(Collection::Tools)).unwrap();
    assert_eq!(tools.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(), ["tool-nlp-01"]);
    let functions = index.search(&only(Collection::Functions)).unwrap();
    assert_eq!(functions[0].kind, Collection::Functions);
    assert_eq!(functions.len(), 1);
}

#[test]
fn hits_carry_scores_snippets_and_pages() {
    let f = Fixture::new();
    for i in 0..5 {
        f.tool(
            &format!("t{i}"),
            &format!("a <b>tool</b> that extracts entities, number {i}"),
            "",
            &[],
        );
    }
    let index = f.open();
    let all = index
        .search(&SearchRequest { text: "extracts", kind: None, page: Page::ALL, snippets: true })
        .unwrap();
    assert_eq!(all.len(), 5);
    assert!(all.windows(2).all(|w| w[0].score >= w[1].score));
    assert!(all[0].snippet.contains("<b>extract"), "{}", all[0].snippet);
    assert!(all[0].snippet.contains("&lt;b&gt;tool"), "record text is escaped: {}", all[0].snippet);
    let page = index
        .search(&SearchRequest {
            text: "extracts",
            kind: None,
            page: Page::new(3, 10),
            snippets: true,
        })
        .unwrap();
    assert_eq!(page.len(), 2);
    assert_eq!(page[0].id, all[3].id);
}

#[test]
fn a_typo_falls_back_to_fuzzy_matching() {
    let f = Fixture::new();
    f.tool("ner", "named entity extractor", "", &[]);
    f.tool("img", "image classifier", "", &[]);
    let index = f.open();
    assert_eq!(search(&index, "extractr"), ["ner"]);
    assert_eq!(search(&index, "clasifier"), ["img"]);
    assert!(search(&index, "zzzzqqq").is_empty());
}

#[test]
fn bad_syntax_is_a_query_error_that_says_why() {
    let f = Fixture::new();
    f.tool("a", "alpha", "", &[]);
    let index = f.open();
    let nested = format!("{}alpha{}", "(".repeat(500), ")".repeat(500));
    for text in [
        "\"foo",
        "AND",
        "foo:bar",
        "-alpha",
        "(alpha",
        "",
        &"x".repeat(2000),
        "description:*",
        "id:*",
        &nested,
    ] {
        let request = SearchRequest { text, kind: None, page: Page::ALL, snippets: false };
        match index.search(&request) {
            Err(Error::Query(message)) => {
                assert!(message.starts_with(|c: char| !c.is_uppercase()), "{message}");
            }
            other => panic!("{text:?}: expected a query error, got {other:?}"),
        }
    }
}

#[test]
fn far_pages_are_refused_and_fuzzy_pages_work() {
    let f = Fixture::new();
    for i in 0..5 {
        f.tool(&format!("t{i}"), "named entity extractor", "", &[]);
    }
    let index = f.open();
    let request = |text, offset, limit| SearchRequest {
        text,
        kind: None,
        page: Page { offset, limit },
        snippets: false,
    };
    assert!(matches!(index.search(&request("named", 1_000_000_000_000, 10)), Err(Error::Query(_))));
    assert!(matches!(index.search(&request("named", usize::MAX, 10)), Err(Error::Query(_))));
    // Page two of a typo-tolerant result is the rest of it, not nothing.
    assert_eq!(index.search(&request("extractr", 0, 3)).unwrap().len(), 3);
    assert_eq!(index.search(&request("extractr", 3, 3)).unwrap().len(), 2);
    // Past the end of an exact result there is nothing, not a fuzzy answer.
    assert!(index.search(&request("named", 5, 3)).unwrap().is_empty());
    // Operators keep their meaning: no fuzzy retry that would ignore the exclusion.
    assert!(index.search(&request("extractr -named", 0, 10)).unwrap().is_empty());
}

#[test]
fn a_closed_index_still_searches_and_can_be_reopened() {
    let f = Fixture::new();
    f.tool("a", "first", "", &[]);
    let index = f.open();
    index.close();
    assert_eq!(search(&index, "first"), ["a"]);
    f.tool("b", "second", "", &[]);
    assert_eq!(index.catch_up().unwrap(), 1, "a closed index indexes nothing");
    // The writer lock is free while the old handle is still alive.
    let reopened = f.open();
    assert_eq!(search(&reopened, "second"), ["b"]);
}

#[test]
fn updates_and_deletes_are_followed() {
    let f = Fixture::new();
    f.tool("a", "old words", "", &[]);
    let index = f.open();
    assert_eq!(search(&index, "old"), ["a"]);
    f.tool("a", "new words", "", &[]);
    index.catch_up().unwrap();
    assert!(search(&index, "old").is_empty());
    assert_eq!(search(&index, "new"), ["a"]);
    f.store.delete::<ToolEntry>("a").unwrap();
    index.catch_up().unwrap();
    assert!(search(&index, "new").is_empty());
    assert_eq!(index.applied(), f.store.last_seq());
}

#[test]
fn a_reopened_index_catches_up_from_where_it_stopped() {
    let f = Fixture::new();
    f.tool("a", "first", "", &[]);
    drop(f.open());
    // Written while no index was following.
    f.tool("b", "second", "", &[]);
    f.store.delete::<ToolEntry>("a").unwrap();
    let index = f.open();
    assert_eq!(search(&index, "second"), ["b"]);
    assert!(search(&index, "first").is_empty());
    assert_eq!(index.applied(), f.store.last_seq());
}

#[test]
fn a_missing_or_corrupt_index_is_rebuilt_from_the_store() {
    let f = Fixture::new();
    f.tool("a", "kept in the store", "", &[]);
    drop(f.open());
    std::fs::remove_dir_all(f.index_dir()).unwrap();
    assert_eq!(search(&f.open(), "kept"), ["a"]);

    std::fs::write(f.index_dir().join("meta.json"), b"{ not json").unwrap();
    assert_eq!(search(&f.open(), "kept"), ["a"]);

    // Segment files gone but meta.json intact.
    for entry in std::fs::read_dir(f.index_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "idx") {
            std::fs::remove_file(path).unwrap();
        }
    }
    assert_eq!(search(&f.open(), "kept"), ["a"]);
}

#[tokio::test]
async fn the_follower_indexes_writes_as_they_commit() {
    let f = Fixture::new();
    let index = Arc::new(f.open());
    let follower = follow(index.clone(), f.store.subscribe());
    for i in 0..20 {
        f.tool(&format!("t{i}"), &format!("written live {i}"), "", &[]);
    }
    let last = f.store.last_seq();
    let mut waited = Duration::ZERO;
    while index.applied() < last {
        assert!(waited < Duration::from_secs(30), "the follower stalled at {}", index.applied());
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += Duration::from_millis(10);
    }
    assert_eq!(search(&index, "live").len(), 20);
    follower.stop().await;
}
