//! Record ids: `^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$` (contract section 4).

use crate::Error;

/// The longest id accepted.
pub const ID_MAX_LEN: usize = 128;

/// What an id looks like, as error messages say it (after "ids", "names", …).
pub const ID_RULE: &str =
    "start with a letter or digit, then up to 127 of letters, digits and . _ : @ -";

/// Checks an id against the id pattern, naming the kind in the error.
pub fn validate_id(kind: &str, id: &str) -> Result<(), Error> {
    if id.is_empty() {
        return Err(Error::Invalid(format!("{kind} id is missing: set '{kind}_id'")));
    }
    validate_named(&format!("{kind} id"), "ids", id)
}

/// Checks a value that follows the id pattern: `invalid {label} '…': {plural} start with …`.
pub fn validate_named(label: &str, plural: &str, value: &str) -> Result<(), Error> {
    let mut chars = value.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok =
        chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '@' | '-'));
    if !first_ok || !rest_ok || value.len() > ID_MAX_LEN {
        return Err(Error::Invalid(format!(
            "invalid {label} '{}': {plural} {ID_RULE}",
            truncate(value, 64)
        )));
    }
    Ok(())
}

/// Cuts untrusted text before it is echoed in a message.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_pattern() {
        for id in ["a", "tool-123", "A.b_c:d@e-f", "0", &"x".repeat(128)] {
            assert!(validate_id("tool", id).is_ok(), "{id}");
        }
    }

    #[test]
    fn refuses_everything_else() {
        for id in ["", "-a", ".a", "a/b", "a b", "../x", "é", &"x".repeat(129), "a\0b"] {
            let err = validate_id("tool", id).unwrap_err().to_string();
            assert!(err.contains("tool id"), "{id}: {err}");
        }
    }
}
