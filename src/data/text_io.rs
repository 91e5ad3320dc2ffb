//! `.txt` and `.jsonl` files: one streaming pass at open records where every block of
//! [`TEXT_CHUNK_DOCS`] documents starts (and checks the whole file is UTF-8, so bad input fails
//! before any work starts); later reads seek straight to one block.

use crate::error::{Error, Result};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// Documents per chunk of a text file: the unit of reading and of loader resume positions, the
/// text-file counterpart of a parquet row group (nanochat uses 1024 rows per group).
pub(crate) const TEXT_CHUNK_DOCS: usize = 1024;

/// Bytes read per block while indexing.
const BLOCK: usize = 8 << 20;

/// A run of consecutive records: bytes `start..end` of the file.
#[derive(Clone, Debug)]
pub(crate) struct TextChunk {
    pub start: u64,
    pub end: u64,
    pub docs: u32,
}

fn file_err(path: &Path, message: String) -> Error {
    Error::File { path: path.to_path_buf(), message }
}

fn count_newlines(b: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', b).count() as u64
}

/// Index a text file whose records are separated by `delim` (`None`: the whole file is one
/// record). A trailing delimiter does not start another record. Errors name the byte offset and
/// line of the first invalid UTF-8.
pub(crate) fn index_text(path: &Path, delim: Option<&[u8]>, chunk_docs: usize) -> Result<Vec<TextChunk>> {
    let mut file = File::open(path).map_err(|e| file_err(path, format!("cannot open: {e}")))?;
    let dl = delim.map_or(0, |d| d.len());
    let finder = delim.map(memchr::memmem::Finder::new);
    let mut block = vec![0u8; BLOCK];
    // `buf` holds the unprocessed tail of the previous block (a possible partial delimiter or
    // UTF-8 character) followed by the new block; `buf_start` is the file offset of buf[0].
    let mut buf: Vec<u8> = Vec::with_capacity(BLOCK + 8);
    let mut buf_start = 0u64;
    let mut lines_before_buf = 0u64;
    let mut utf8_from = 0usize;
    let mut search_from = 0usize;
    let mut next_doc_start = 0u64;
    let mut chunk_start = 0u64;
    let mut chunk_docs_so_far = 0u32;
    let mut chunks = Vec::new();
    loop {
        let n = file.read(&mut block).map_err(|e| file_err(path, format!("cannot read: {e}")))?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&block[..n]);
        match std::str::from_utf8(&buf[utf8_from..]) {
            Ok(_) => utf8_from = buf.len(),
            // An incomplete character at the end of the block: finish it with the next block.
            Err(e) if e.error_len().is_none() => utf8_from += e.valid_up_to(),
            Err(e) => {
                let at = utf8_from + e.valid_up_to();
                let line = 1 + lines_before_buf + count_newlines(&buf[..at]);
                return Err(not_utf8(path, buf_start + at as u64, line));
            }
        }
        if let Some(f) = &finder {
            // Search from after the last delimiter consumed, so matches never overlap (as
            // `str::split`: "\n\n\n" holds one "\n\n"), even across a block boundary.
            let mut pos = search_from.max(next_doc_start.saturating_sub(buf_start) as usize);
            while let Some(m) = f.find(&buf[pos..]) {
                let abs = buf_start + (pos + m) as u64;
                pos += m + dl;
                next_doc_start = abs + dl as u64;
                chunk_docs_so_far += 1;
                if chunk_docs_so_far as usize == chunk_docs {
                    chunks.push(TextChunk { start: chunk_start, end: abs, docs: chunk_docs_so_far });
                    chunk_start = next_doc_start;
                    chunk_docs_so_far = 0;
                }
            }
        }
        // Keep what a straddling delimiter or character could still need.
        let keep_from = buf.len().saturating_sub(dl.saturating_sub(1)).min(utf8_from);
        lines_before_buf += count_newlines(&buf[..keep_from]);
        buf.drain(..keep_from);
        buf_start += keep_from as u64;
        utf8_from -= keep_from;
        search_from = buf.len().saturating_sub(dl.saturating_sub(1));
    }
    let len = buf_start + buf.len() as u64;
    if utf8_from < buf.len() {
        let line = 1 + lines_before_buf + count_newlines(&buf[..utf8_from]);
        return Err(not_utf8(path, buf_start + utf8_from as u64, line));
    }
    if next_doc_start < len || (delim.is_none() && len > 0) {
        chunk_docs_so_far += 1; // the last record has no delimiter after it
    }
    if chunk_docs_so_far > 0 {
        chunks.push(TextChunk { start: chunk_start, end: len, docs: chunk_docs_so_far });
    }
    Ok(chunks)
}

fn not_utf8(path: &Path, offset: u64, line: u64) -> Error {
    file_err(
        path,
        format!(
            "is not UTF-8: invalid byte sequence at byte {offset} (line {line})\n  HINT: convert it, e.g. \
             `iconv -f latin1 -t utf-8 in.txt > out.txt`, and point --data at the converted file"
        ),
    )
}

/// Bytes `c.start..c.end` as text. Re-checked as UTF-8: the file may have changed since it was
/// indexed, and a bad read must fail loudly rather than feed garbage to the tokenizer.
fn read_range(path: &Path, c: &TextChunk) -> Result<String> {
    let mut f = File::open(path).map_err(|e| file_err(path, format!("cannot open: {e}")))?;
    let mut bytes = vec![0u8; (c.end - c.start) as usize];
    f.seek(SeekFrom::Start(c.start)).and_then(|_| f.read_exact(&mut bytes)).map_err(|e| {
        file_err(
            path,
            format!(
                "cannot read bytes {}..{}: {e}\n  HINT: the file shrank since it was indexed; restart",
                c.start, c.end
            ),
        )
    })?;
    String::from_utf8(bytes).map_err(|e| {
        file_err(
            path,
            format!("is not UTF-8 near byte {} ({e})\n  HINT: the file changed since it was indexed; restart", c.start),
        )
    })
}

fn changed(path: &Path, what: &str) -> Error {
    file_err(path, format!("{what}\n  HINT: the file changed while it was being read; restart so it is indexed again"))
}

/// The documents of one chunk of a delimited (or whole-file) `.txt`.
pub(crate) fn read_text_chunk(path: &Path, c: &TextChunk, delim: Option<&str>) -> Result<Vec<String>> {
    let text = read_range(path, c)?;
    let Some(d) = delim else {
        return Ok(vec![text]);
    };
    let mut docs: Vec<String> = text.split(d).map(str::to_string).collect();
    if docs.len() == c.docs as usize + 1 && docs.last().is_some_and(String::is_empty) {
        docs.pop(); // the file's trailing delimiter
    }
    if docs.len() != c.docs as usize {
        return Err(changed(
            path,
            &format!("bytes {}..{} hold {} documents, the index says {}", c.start, c.end, docs.len(), c.docs),
        ));
    }
    Ok(docs)
}

/// The documents of one chunk of a `.jsonl`: field `field` of each line; blank lines are empty
/// documents. `first_line` numbers the chunk's first line for error messages.
pub(crate) fn read_jsonl_chunk(path: &Path, c: &TextChunk, field: &str, first_line: u64) -> Result<Vec<String>> {
    let text = read_range(path, c)?;
    let mut docs = Vec::with_capacity(c.docs as usize);
    for (i, line) in text.split('\n').enumerate() {
        if docs.len() == c.docs as usize {
            if line.is_empty() {
                break; // the file's final newline
            }
            return Err(changed(path, &format!("line {} is beyond the indexed chunk", first_line + i as u64)));
        }
        let line_no = first_line + i as u64;
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            docs.push(String::new());
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(line).map_err(|e| {
            file_err(path, format!("line {line_no} is not JSON ({e})\n  HINT: .jsonl needs one JSON object per line, e.g. {{\"text\": \"...\"}}"))
        })?;
        match value.get(field) {
            Some(serde_json::Value::String(s)) => docs.push(s.clone()),
            Some(serde_json::Value::Null) => docs.push(String::new()),
            other => {
                let keys =
                    value.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>().join(", ")).unwrap_or_default();
                let what = if other.is_some() {
                    format!("field `{field}` is not a string")
                } else {
                    format!("has no field `{field}`")
                };
                return Err(file_err(
                    path,
                    format!("line {line_no} {what} (fields: {keys})\n  HINT: pass --text-field with the field that holds the document text"),
                ));
            }
        }
    }
    if docs.len() != c.docs as usize {
        return Err(changed(
            path,
            &format!("bytes {}..{} hold {} lines, the index says {}", c.start, c.end, docs.len(), c.docs),
        ));
    }
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("wgpt-text-io-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn all_docs(p: &Path, delim: &str, chunk: usize) -> Vec<String> {
        let idx = index_text(p, Some(delim.as_bytes()), chunk).unwrap();
        idx.iter().flat_map(|c| read_text_chunk(p, c, Some(delim)).unwrap()).collect()
    }

    #[test]
    fn delimited_index_matches_str_split() {
        // Every chunking of these texts must reproduce `str::split` (minus a trailing empty piece).
        let cases = ["a\n\nb\n\nc", "a\n\nb\n\n", "\n\n\n\nx", "one doc", "", "a\n\n\nb", "x\n\n\n\n\ny"];
        for (i, text) in cases.iter().enumerate() {
            let p = tmp(&format!("d{i}.txt"), text.as_bytes());
            let mut want: Vec<String> = text.split("\n\n").map(str::to_string).collect();
            if want.last().is_some_and(String::is_empty) {
                want.pop();
            }
            for chunk in [1, 2, 3, 1024] {
                assert_eq!(all_docs(&p, "\n\n", chunk), want, "text {text:?} chunk {chunk}");
            }
        }
    }

    #[test]
    fn delimiter_straddling_blocks_is_found() {
        // Documents of BLOCK-1 bytes put a delimiter across every block boundary.
        let doc = "x".repeat(BLOCK - 1);
        let text = format!("{doc}<SEP>{doc}<SEP>é{doc}");
        let p = tmp("straddle.txt", text.as_bytes());
        let docs = all_docs(&p, "<SEP>", 2);
        assert_eq!(docs.len(), 3);
        assert_eq!(docs.concat().len(), 3 * doc.len() + 'é'.len_utf8());
    }

    #[test]
    fn invalid_utf8_names_offset_and_line() {
        let p = tmp("bad.txt", b"fine\nalso fine\nbad \xff here\n");
        let e = index_text(&p, Some(b"\n"), 4).unwrap_err().to_string();
        assert!(e.contains("byte 19") && e.contains("line 3") && e.contains("bad.txt") && e.contains("HINT"), "{e}");
        // A file cut inside a multi-byte character.
        let p = tmp("cut.txt", "abc é".as_bytes().split_last().unwrap().1);
        let e = index_text(&p, None, 4).unwrap_err().to_string();
        assert!(e.contains("not UTF-8"), "{e}");
    }

    #[test]
    fn jsonl_errors_name_the_line() {
        let p = tmp("x.jsonl", b"{\"text\": \"a\"}\n\n{\"body\": \"b\"}\n");
        let idx = index_text(&p, Some(b"\n"), 1024).unwrap();
        assert_eq!(idx[0].docs, 3);
        let e = read_jsonl_chunk(&p, &idx[0], "text", 1).unwrap_err().to_string();
        assert!(e.contains("line 3 has no field `text` (fields: body)") && e.contains("--text-field"), "{e}");
        assert!(read_jsonl_chunk(&p, &idx[0], "body", 1).unwrap_err().to_string().contains("line 1"));
    }
}
