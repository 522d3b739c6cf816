//! Upload bundles: a zip holding `spec.json`, and optionally the code archive (`tool.zip`) and
//! the manual (`tool.md`), at the root or inside one top-level folder (contract section 4).
//!
//! Every check runs before anything is stored: entry names, declared and actual unpacked sizes
//! (a zip bomb stops at the limit, whatever its headers claim), and the spec itself.

use std::io::{Cursor, Read};

use zip::ZipArchive;

use crate::error::{Error, Result};

/// Most entries a bundle may hold.
pub const MAX_ENTRIES: usize = 10_000;

/// The files taken from a bundle, not yet parsed.
#[derive(Debug, Default)]
pub struct Bundle {
    pub spec: Vec<u8>,
    pub code: Option<Vec<u8>>,
    pub doc: Option<String>,
}

/// Reads a bundle. `code_name`/`doc_name` are `tool.zip`/`tool.md` (or the function names).
pub fn read(bytes: &[u8], code_name: &str, doc_name: &str, max_unpacked: u64) -> Result<Bundle> {
    read_from(Cursor::new(bytes), code_name, doc_name, max_unpacked)
}

/// [`read`] from a file (an upload streamed to disk), or anything else that seeks.
pub fn read_from(
    source: impl std::io::Read + std::io::Seek,
    code_name: &str,
    doc_name: &str,
    max_unpacked: u64,
) -> Result<Bundle> {
    let mut archive = ZipArchive::new(source).map_err(|e| {
        bad(format!("the upload is not a readable zip archive ({e}): send a .zip file"))
    })?;
    if archive.len() > MAX_ENTRIES {
        return Err(bad(format!(
            "the zip holds {} entries; at most {MAX_ENTRIES} are accepted",
            archive.len()
        )));
    }
    let mut names = Vec::with_capacity(archive.len());
    let mut declared: u64 = 0;
    for i in 0..archive.len() {
        let entry =
            archive.by_index_raw(i).map_err(|e| bad(format!("unreadable zip entry: {e}")))?;
        let name = entry
            .name()
            .map_err(|e| bad(format!("zip entry {i} has an unreadable name: {e}")))?
            .into_owned();
        check_name(&name)?;
        declared = declared.saturating_add(entry.size());
        names.push(name);
    }
    if declared > max_unpacked {
        return Err(too_large(max_unpacked));
    }
    let root = root_folder(&names);
    let find = |file: &str| names.iter().position(|n| *n == format!("{root}{file}"));
    let spec_at = find("spec.json").ok_or_else(|| {
        bad("the zip has no spec.json: put spec.json at the root of the zip (or inside its one top-level folder)".into())
    })?;
    let mut budget = max_unpacked;
    let mut take = |index: usize| -> Result<Vec<u8>> {
        let entry =
            archive.by_index(index).map_err(|e| bad(format!("unreadable zip entry: {e}")))?;
        // Sized once from the header (within the budget), so reading never doubles a buffer of
        // tens of MiB; the header does not decide what is read, the bytes do.
        let mut out = Vec::with_capacity(entry.size().min(budget) as usize + 1);
        // Read one byte past the budget: the actual size decides, not the header.
        entry
            .take(budget.saturating_add(1))
            .read_to_end(&mut out)
            .map_err(|e| bad(format!("corrupt zip entry '{}': {e}", names[index])))?;
        if out.len() as u64 > budget {
            return Err(too_large(max_unpacked));
        }
        budget -= out.len() as u64;
        Ok(out)
    };
    let spec = take(spec_at)?;
    let code = find(code_name).map(&mut take).transpose()?;
    let doc = match find(doc_name).map(&mut take).transpose()? {
        Some(bytes) => Some(
            String::from_utf8(bytes).map_err(|_| bad(format!("{doc_name} is not utf-8 text")))?,
        ),
        None => None,
    };
    Ok(Bundle { spec, code, doc })
}

/// Refuses names that could escape a directory if anyone ever unpacked this archive.
pub(crate) fn check_name(name: &str) -> Result<()> {
    let escapes = name.starts_with('/')
        || name.starts_with('\\')
        || name.as_bytes().get(1) == Some(&b':')
        || name.split(['/', '\\']).any(|part| part == "..")
        || name.contains('\0');
    if escapes {
        return Err(bad(format!(
            "zip entry '{}' has an absolute path or '..': entries must stay inside the archive",
            name.escape_default()
        )));
    }
    Ok(())
}

/// `"folder/"` when every entry sits in one top-level folder and spec.json is not at the root.
fn root_folder(names: &[String]) -> String {
    if names.iter().any(|n| n == "spec.json") {
        return String::new();
    }
    let mut tops = names.iter().map(|n| n.split('/').next().unwrap_or(""));
    match tops.next() {
        Some(first) if !first.is_empty() && tops.all(|t| t == first) => format!("{first}/"),
        _ => String::new(),
    }
}

fn bad(message: String) -> Error {
    Error::BadRequest(message)
}

fn too_large(limit: u64) -> Error {
    Error::TooLarge(format!(
        "the zip unpacks to more than {limit} bytes, the limit: send a smaller bundle"
    ))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use zip::write::SimpleFileOptions;

    use super::*;

    fn zip(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, bytes) in files {
            writer.start_file(*name, SimpleFileOptions::default()).unwrap();
            writer.write_all(bytes).unwrap();
        }
        writer.finish().unwrap().into_inner()
    }

    #[test]
    fn reads_root_and_folder_layouts() {
        let flat = zip(&[("spec.json", b"{}"), ("tool.md", b"# doc"), ("tool.zip", b"code")]);
        let b = read(&flat, "tool.zip", "tool.md", 1 << 20).unwrap();
        assert_eq!(
            (b.spec.as_slice(), b.doc.as_deref(), b.code.as_deref()),
            (&b"{}"[..], Some("# doc"), Some(&b"code"[..]))
        );
        let nested = zip(&[("t/spec.json", b"{}"), ("t/tool.md", b"m")]);
        let b = read(&nested, "tool.zip", "tool.md", 1 << 20).unwrap();
        assert_eq!(b.doc.as_deref(), Some("m"));
        assert!(b.code.is_none());
    }

    #[test]
    fn refuses_escaping_names_missing_spec_and_non_zips() {
        for name in ["../x", "/etc/x", "a/../../x", "C:/x", "\\x"] {
            let err =
                read(&zip(&[("spec.json", b"{}"), (name, b"x")]), "tool.zip", "tool.md", 1 << 20)
                    .unwrap_err();
            assert!(matches!(err, Error::BadRequest(_)), "{name}: {err}");
        }
        let err = read(&zip(&[("other.json", b"{}")]), "tool.zip", "tool.md", 1 << 20).unwrap_err();
        assert!(err.to_string().contains("no spec.json"));
        assert!(read(b"not a zip", "tool.zip", "tool.md", 1 << 20).is_err());
        let two_roots = zip(&[("a/spec.json", b"{}"), ("b/x", b"")]);
        assert!(read(&two_roots, "tool.zip", "tool.md", 1 << 20).is_err());
    }

    /// Rewrites every zip header that declares `from` as the unpacked size to declare `to`.
    fn lie_about_size(zip: &mut [u8], from: u32, to: u32) -> usize {
        let mut patched = 0;
        for (signature, offset) in [(0x0403_4b50u32, 22usize), (0x0201_4b50, 24)] {
            let mut i = 0;
            while i + offset + 4 <= zip.len() {
                if zip[i..i + 4] == signature.to_le_bytes()
                    && zip[i + offset..i + offset + 4] == from.to_le_bytes()
                {
                    zip[i + offset..i + offset + 4].copy_from_slice(&to.to_le_bytes());
                    patched += 1;
                }
                i += 1;
            }
        }
        patched
    }

    #[test]
    fn a_zip_bomb_whose_headers_lie_is_refused_too() {
        let zeros = vec![0u8; 4 << 20];
        let mut bomb = zip(&[("spec.json", b"{}"), ("tool.zip", &zeros)]);
        assert_eq!(lie_about_size(&mut bomb, 4 << 20, 100), 2, "local and central headers");
        let err = read(&bomb, "tool.zip", "tool.md", 1 << 20).unwrap_err();
        assert!(matches!(err, Error::TooLarge(_) | Error::BadRequest(_)), "{err}");
        // With a budget that the lie fits in but the truth does not, the bytes read decide.
        let err = read(&bomb, "tool.zip", "tool.md", 1000).unwrap_err();
        assert!(matches!(err, Error::TooLarge(_) | Error::BadRequest(_)), "{err}");
    }

    #[test]
    fn a_zip_bomb_stops_at_the_limit() {
        let zeros = vec![0u8; 4 << 20];
        let bomb = zip(&[("spec.json", b"{}"), ("tool.zip", &zeros)]);
        assert!(bomb.len() < 64 * 1024, "deflate makes it small: {}", bomb.len());
        let err = read(&bomb, "tool.zip", "tool.md", 1 << 20).unwrap_err();
        assert!(matches!(err, Error::TooLarge(_)), "{err}");
    }
}
