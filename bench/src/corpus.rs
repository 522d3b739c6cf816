//! A deterministic corpus of tool records: the same seed gives the same records on every machine.

use gridnode_store::ToolEntry;
use serde_json::json;

/// Distinct tags in the corpus. Each tool carries [`TAGS_PER_TOOL`] of them, so a tag is held
/// by about `2 * n / TAG_VOCABULARY` tools (20 at 100k).
pub const TAG_VOCABULARY: usize = 10_000;
pub const TAGS_PER_TOOL: usize = 2;
/// Tool types, spread evenly.
pub const TYPES: [&str; 8] = [
    "extractor",
    "inference",
    "monitor",
    "transformer",
    "validator",
    "retriever",
    "planner",
    "router",
];
/// Execution modes, spread evenly.
pub const MODES: [&str; 3] = ["sync", "async", "batch"];
const WORDS: [&str; 24] = [
    "language",
    "model",
    "vision",
    "extract",
    "entities",
    "summarize",
    "translate",
    "classify",
    "image",
    "audio",
    "detect",
    "anomaly",
    "forecast",
    "search",
    "index",
    "embed",
    "rank",
    "parse",
    "document",
    "table",
    "speech",
    "query",
    "graph",
    "stream",
];

/// A small, fast, seeded PRNG (xorshift64*): enough for corpora, no dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Distinct words in the long tail of descriptions.
pub const VOCABULARY: usize = 5_000;
const SYLLABLES: [&str; 16] = [
    "ka", "lo", "mi", "ren", "tu", "vex", "dra", "sil", "orn", "pha", "quo", "zen", "bri", "mus",
    "tal", "gev",
];

/// Vocabulary word `w`: three syllables, a distinct word for every `w` below [`VOCABULARY`].
pub fn word(w: usize) -> String {
    let w = w % VOCABULARY;
    let (a, b, c) = (w % 16, (w / 16) % 16, (w / 256) % 20);
    format!(
        "{}{}{}{}",
        SYLLABLES[a],
        SYLLABLES[b],
        SYLLABLES[c % 16],
        if c >= 16 { "s" } else { "" }
    )
}

/// A vocabulary index, skewed toward low indexes (frequent words).
pub fn skewed(rng: &mut Rng) -> usize {
    let u = (rng.next_u64() % 1_000_000) as f64 / 1_000_000.0;
    ((u * u) * VOCABULARY as f64) as usize
}

fn rare_words(rng: &mut Rng, n: usize) -> String {
    (0..n).map(|_| word(skewed(rng))).collect::<Vec<_>>().join(" ")
}

/// `n` two-word keyword queries drawn like the descriptions' long tail.
pub fn queries(n: usize, seed: u64) -> Vec<String> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| format!("{} {}", word(skewed(&mut rng)), word(skewed(&mut rng)))).collect()
}

/// The id of tool `i`.
pub fn tool_id(i: usize) -> String {
    format!("tool-{i:07}")
}

/// The tag with index `t`.
pub fn tag(t: usize) -> String {
    format!("tag-{t:05}")
}

/// `n` tools with realistic field sizes: a sentence of description, a paragraph of man page,
/// metadata with a version and a cost, an api spec in the seed's shorthand.
pub fn tools(n: usize, seed: u64) -> Vec<ToolEntry> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|i| {
            let sentence = |rng: &mut Rng, words: usize| {
                (0..words).map(|_| WORDS[rng.below(WORDS.len())]).collect::<Vec<_>>().join(" ")
            };
            // Six common domain words and four from a long, skewed vocabulary: most queries
            // for a vocabulary word hit tens to hundreds of tools, as real ones do.
            let description = format!("{} {}", sentence(&mut rng, 6), rare_words(&mut rng, 4));
            let man_page = format!("# {}\n\n{}", tool_id(i), sentence(&mut rng, 60));
            let tool = json!({
                "tool_id": tool_id(i),
                "tool_type": TYPES[i % TYPES.len()],
                "tool_tags": (0..TAGS_PER_TOOL).map(|_| tag(rng.below(TAG_VOCABULARY))).collect::<Vec<_>>(),
                "tool_search_description": description,
                "tool_man_page_doc": man_page,
                "tool_metadata": {"version": format!("1.{}.0", i % 10), "cost": rng.below(100), "owner": format!("team-{}", i % 50)},
                "tool_api_spec": {"text": "string", "limit": {"type": "integer", "min": 1, "max": 100, "optional": true}},
                "tool_execution_mode": MODES[i % MODES.len()],
                "tool_policy_rule_uri": format!("policies://org/{}", i % 20),
            });
            serde_json::from_value(tool).expect("the corpus is valid")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabulary_words_are_distinct() {
        let words: std::collections::HashSet<String> = (0..VOCABULARY).map(word).collect();
        assert_eq!(words.len(), VOCABULARY);
    }

    #[test]
    fn the_corpus_is_deterministic() {
        assert_eq!(tools(50, 1), tools(50, 1));
        assert_ne!(tools(50, 1), tools(50, 2));
        assert_eq!(queries(5, 3), queries(5, 3));
    }
}
