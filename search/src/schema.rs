//! The index schema: one document per record of either registry.

use tantivy::Index;
use tantivy::schema::{
    Field, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::tokenizer::{LowerCaser, RawTokenizer, RemoveLongFilter, TextAnalyzer};

/// English stemming, lowercased: prose fields.
pub const PROSE: &str = "en_stem";
/// The whole value as one lowercased token: ids, tags, types.
pub const EXACT: &str = "exact";

/// The fields, by name as users write them in queries (`tag:nlp`).
#[derive(Debug, Clone, Copy)]
pub struct Fields {
    /// `tool/<id>` or `function/<id>`: the unique key (raw, case-sensitive) used to replace and
    /// delete; a hit's kind and id are read back from it.
    pub key: Field,
    pub kind: Field,
    pub id: Field,
    pub description: Field,
    pub man_page: Field,
    pub tag: Field,
    pub kind_type: Field,
    pub meta: Field,
}

pub fn build() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let exact = TextOptions::default()
        .set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(EXACT)
                .set_index_option(IndexRecordOption::WithFreqs),
        )
        .set_stored();
    let prose = |stored: bool| {
        let options = TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(PROSE)
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        );
        if stored { options.set_stored() } else { options }
    };
    let fields = Fields {
        key: builder.add_text_field("key", STRING | STORED),
        kind: builder.add_text_field("kind", exact.clone()),
        id: builder.add_text_field("id", exact.clone()),
        description: builder.add_text_field("description", prose(true)),
        man_page: builder.add_text_field("man_page", prose(true)),
        tag: builder.add_text_field("tag", exact.clone()),
        kind_type: builder.add_text_field("type", exact),
        meta: builder.add_text_field("meta", prose(false)),
    };
    (builder.build(), fields)
}

/// Tokenizers are not stored in the index: register ours every time one is opened.
pub fn register_tokenizers(index: &Index) {
    let exact = TextAnalyzer::builder(RawTokenizer::default())
        .filter(RemoveLongFilter::limit(1024))
        .filter(LowerCaser)
        .build();
    index.tokenizers().register(EXACT, exact);
}
