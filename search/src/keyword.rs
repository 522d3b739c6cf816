//! A simple relevance score: how often the query's terms occur in a record's text, with the
//! search description weighted above the tags and the man page, and a bonus for the whole phrase.

use gridnode_store::RegistryEntry;

const DESCRIPTION_WEIGHT: f32 = 3.0;
const TAG_WEIGHT: f32 = 2.0;
const MAN_PAGE_WEIGHT: f32 = 1.0;
const PHRASE_BONUS: f32 = 2.0;

/// A parsed keyword query: lowercase terms.
#[derive(Debug, Clone)]
pub struct KeywordQuery {
    phrase: String,
    terms: Vec<String>,
}

impl KeywordQuery {
    /// `None` when the text has no searchable term.
    pub fn parse(text: &str) -> Option<KeywordQuery> {
        let phrase = text.trim().to_lowercase();
        let terms: Vec<String> = phrase
            .split(|c: char| !c.is_alphanumeric())
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect();
        (!terms.is_empty()).then_some(KeywordQuery { phrase, terms })
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
        hits.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.id().cmp(b.1.id())));
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
        assert!(KeywordQuery::parse(" \"( ").is_none());
        assert!(KeywordQuery::parse("(a+)+$").is_some());
    }
}
