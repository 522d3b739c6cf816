//! A linear scan of records, kept as the baseline the index is measured against: how often the
//! query's terms occur in a record's text, with the search description weighted above the tags and
//! the man page, and a bonus for the whole phrase.

use gridnode_store::RegistryEntry;

const DESCRIPTION_WEIGHT: f32 = 3.0;
const TAG_WEIGHT: f32 = 2.0;
const MAN_PAGE_WEIGHT: f32 = 1.0;
const PHRASE_BONUS: f32 = 2.0;

/// Most distinct words in one keyword query.
pub const MAX_TERMS: usize = 32;

/// Why a keyword query was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeywordError {
    NoWords,
    TooManyWords(usize),
}

impl std::fmt::Display for KeywordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeywordError::NoWords => {
                f.write_str("keyword has no searchable word: give at least one letter or digit")
            }
            KeywordError::TooManyWords(n) => {
                write!(
                    f,
                    "keyword has {n} distinct words; at most {MAX_TERMS} are searched at once"
                )
            }
        }
    }
}

impl std::error::Error for KeywordError {}

/// A parsed keyword query: lowercase terms.
#[derive(Debug, Clone)]
pub struct KeywordQuery {
    phrase: String,
    terms: Vec<String>,
}

impl KeywordQuery {
    /// Splits the text into distinct lowercase words.
    pub fn parse(text: &str) -> Result<KeywordQuery, KeywordError> {
        let phrase = text.trim().to_lowercase();
        let mut terms: Vec<String> = Vec::new();
        for term in phrase.split(|c: char| !c.is_alphanumeric()).filter(|t| !t.is_empty()) {
            if !terms.iter().any(|t| t == term) {
                terms.push(term.to_owned());
            }
        }
        match terms.len() {
            0 => Err(KeywordError::NoWords),
            n if n > MAX_TERMS => Err(KeywordError::TooManyWords(n)),
            _ => Ok(KeywordQuery { phrase, terms }),
        }
    }

    /// The record's score; 0 when no term occurs.
    pub fn score<R: RegistryEntry>(&self, record: &R) -> f32 {
        let description = record.search_description().to_lowercase();
        let man_page = record.man_page().to_lowercase();
        let mut score = 0.0;
        for term in &self.terms {
            score += DESCRIPTION_WEIGHT * description.matches(term.as_str()).count() as f32;
            score += MAN_PAGE_WEIGHT * man_page.matches(term.as_str()).count() as f32;
            score += TAG_WEIGHT
                * record.tags().iter().filter(|tag| tag.to_lowercase() == *term).count() as f32;
        }
        if score > 0.0 && self.terms.len() > 1 && description.contains(&self.phrase) {
            score += PHRASE_BONUS * DESCRIPTION_WEIGHT;
        }
        score
    }

    /// The records with a positive score, best first (ties by id). Records stream through;
    /// only hits are kept. The first error stops the ranking.
    pub fn rank<R: RegistryEntry, E>(
        &self,
        records: impl IntoIterator<Item = Result<R, E>>,
    ) -> Result<Vec<(f32, R)>, E> {
        let mut hits = Vec::new();
        for record in records {
            let record = record?;
            let score = self.score(&record);
            if score > 0.0 {
                hits.push((score, record));
            }
        }
        hits.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.id().cmp(&b.1.id())));
        Ok(hits)
    }
}

#[cfg(test)]
mod tests {
    use gridnode_store::ToolEntry;

    use super::*;

    fn tool(id: &str, description: &str, man: &str) -> ToolEntry {
        ToolEntry {
            tool_id: id.into(),
            tool_search_description: description.into(),
            tool_man_page_doc: man.into(),
            ..ToolEntry::default()
        }
    }

    #[test]
    fn description_outranks_man_page_and_case_is_ignored() {
        let q = KeywordQuery::parse("Large Language MODEL").unwrap();
        let ranked = q
            .rank(
                [
                    tool("b", "", "a model"),
                    tool("a", "This is a large language model tool.", ""),
                    tool("c", "unrelated", "nothing"),
                ]
                .map(Ok::<_, ()>),
            )
            .unwrap();
        let ids: Vec<&str> = ranked.iter().map(|(_, t)| t.tool_id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
    }

    #[test]
    fn punctuation_only_is_not_a_query() {
        assert_eq!(KeywordQuery::parse(" \"( ").unwrap_err(), KeywordError::NoWords);
        assert!(KeywordQuery::parse("(a+)+$").is_ok());
        let many: String = (0..40).map(|i| format!("w{i} ")).collect();
        assert_eq!(KeywordQuery::parse(&many).unwrap_err(), KeywordError::TooManyWords(40));
        let repeated = "model ".repeat(10_000);
        assert_eq!(KeywordQuery::parse(&repeated).unwrap().terms, ["model"]);
    }
}
