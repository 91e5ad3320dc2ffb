//! Hugging Face `tokenizer.json`: writing ours and reading byte-level BPE ones natively.
//!
//! A byte-level `tokenizer.json` stores every token as a string in GPT-2's byte-to-unicode
//! alphabet (byte 0x20 is `Ġ`, and so on), so raw bytes survive JSON. Ours is laid out the way
//! nanochat's `HuggingFaceTokenizer` builds one: a `Split` pre-tokenizer with the split regex
//! ("Isolated"), then `ByteLevel` without its own regex, a BPE model whose merges are listed in
//! training order, a `ByteLevel` decoder, and the special tokens as added tokens at the top ids.
//!
//! Reading: a file with that shape, or GPT-2's (`ByteLevel` pre-tokenizer with its regex), becomes
//! a native [`BpeModel`]; anything else returns [`NotNative`] with the reason, and the caller
//! falls back to the `tokenizers` crate.

use super::bpe::{BpeModel, GPT2_PATTERN};
use serde_json::Value;
use std::fmt::Write as _;

/// GPT-2's reversible byte -> char map: printable Latin-1 bytes map to themselves, the other 68
/// bytes to U+0100 and up, in byte order.
pub fn byte_to_char() -> [char; 256] {
    let printable = |b: u32| (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b);
    let mut map = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..256u32 {
        map[b as usize] = if printable(b) {
            char::from_u32(b).unwrap()
        } else {
            next += 1;
            char::from_u32(next - 1).unwrap()
        };
    }
    map
}

fn token_string(map: &[char; 256], bytes: &[u8]) -> String {
    bytes.iter().map(|&b| map[b as usize]).collect()
}

/// Serialise a trained model with its specials as a `tokenizer.json`.
pub fn write_json(model: &BpeModel, specials: &[(String, u32)]) -> String {
    let map = byte_to_char();
    let js = |s: &str| serde_json::to_string(s).expect("strings always serialise");
    let mut out = String::with_capacity(64 * model.n_ids());
    out.push_str("{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [");
    for (i, (name, id)) in specials.iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        let _ = write!(
            out,
            "{sep}\n    {{\"id\": {id}, \"content\": {}, \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": true}}",
            js(name)
        );
    }
    out.push_str("\n  ],\n  \"normalizer\": null,\n");
    let _ = writeln!(
        out,
        "  \"pre_tokenizer\": {{\"type\": \"Sequence\", \"pretokenizers\": [\
         {{\"type\": \"Split\", \"pattern\": {{\"Regex\": {}}}, \"behavior\": \"Isolated\", \"invert\": false}}, \
         {{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}}]}},",
        js(model.pattern())
    );
    out.push_str("  \"post_processor\": null,\n");
    out.push_str("  \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true},\n");
    out.push_str(
        "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": null,\n    \
         \"continuing_subword_prefix\": null,\n    \"end_of_word_suffix\": null,\n    \"fuse_unk\": false,\n    \
         \"byte_fallback\": false,\n    \"vocab\": {",
    );
    let mut first = true;
    for id in 0..model.n_ids() as u32 {
        if let Some(bytes) = model.token(id) {
            let sep = if first { "" } else { "," };
            first = false;
            let _ = write!(out, "{sep}\n      {}: {id}", js(&token_string(&map, bytes)));
        }
    }
    out.push_str("\n    },\n    \"merges\": [");
    // "left right" strings: the byte-level alphabet has no space, so the split is unambiguous,
    // and every version of the tokenizers library reads this form.
    for (i, &(a, b, _)) in model.merges().iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        let pair =
            format!("{} {}", token_string(&map, model.token(a).unwrap()), token_string(&map, model.token(b).unwrap()));
        let _ = write!(out, "{sep}\n      {}", js(&pair));
    }
    out.push_str("\n    ]\n  }\n}\n");
    out
}

/// A `tokenizer.json` we read natively.
pub struct Parsed {
    pub model: BpeModel,
    /// Added tokens, in id order.
    pub specials: Vec<(String, u32)>,
    pub vocab_size: usize,
}

/// Why a `tokenizer.json` is not a byte-level BPE the native encoder reproduces exactly.
#[derive(Debug)]
pub struct NotNative(pub String);

fn field<'v>(v: &'v Value, key: &str) -> Option<&'v Value> {
    v.get(key).filter(|x| !x.is_null())
}

fn is_false_or_absent(v: &Value, key: &str) -> bool {
    field(v, key).is_none_or(|x| x == &Value::Bool(false))
}

/// The split pattern a byte-level pre-tokenizer stands for, or why it is not one we replicate.
fn split_pattern(pre: Option<&Value>) -> Result<String, NotNative> {
    let no = |why: &str| Err(NotNative(why.to_string()));
    let Some(pre) = pre else {
        return no("it has no pre-tokenizer");
    };
    let ty = pre.get("type").and_then(Value::as_str).unwrap_or("");
    let byte_level_ok = |bl: &Value, want_regex: bool| {
        bl.get("type").and_then(Value::as_str) == Some("ByteLevel")
            && is_false_or_absent(bl, "add_prefix_space")
            && bl.get("use_regex").and_then(Value::as_bool).unwrap_or(true) == want_regex
    };
    match ty {
        "ByteLevel" if byte_level_ok(pre, true) => Ok(GPT2_PATTERN.to_string()),
        "Sequence" => {
            let list = pre.get("pretokenizers").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
            match list {
                [split, bl] if byte_level_ok(bl, false) => {
                    let regex = split.pointer("/pattern/Regex").and_then(Value::as_str);
                    let isolated = split.get("behavior").and_then(Value::as_str) == Some("Isolated");
                    let plain = split.get("type").and_then(Value::as_str) == Some("Split")
                        && is_false_or_absent(split, "invert");
                    match regex {
                        Some(r) if isolated && plain => Ok(r.to_string()),
                        _ => no("its Split pre-tokenizer is not an Isolated regex split"),
                    }
                }
                _ => no("its pre-tokenizer sequence is not [Split(regex), ByteLevel]"),
            }
        }
        _ => no("its pre-tokenizer is not byte-level without a prefix space"),
    }
}

/// Read a `tokenizer.json` as a native byte-level BPE if it is one.
pub fn parse_native(json: &Value) -> Result<Parsed, NotNative> {
    let no = |why: String| Err(NotNative(why));
    let model = json.get("model").ok_or_else(|| NotNative("it has no model".into()))?;
    if model.get("type").and_then(Value::as_str) != Some("BPE") {
        return no("its model is not BPE".into());
    }
    if field(json, "normalizer").is_some() {
        return no("it has a normalizer".into());
    }
    let pattern = split_pattern(field(json, "pre_tokenizer"))?;
    for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
        if field(model, key).and_then(Value::as_str).is_some_and(|s| !s.is_empty()) {
            return no(format!("its BPE model sets {key}"));
        }
    }
    if !is_false_or_absent(model, "ignore_merges") {
        return no("its BPE model sets ignore_merges".into());
    }
    if field(model, "dropout").and_then(Value::as_f64).is_some_and(|d| d > 0.0) {
        return no("its BPE model uses dropout".into());
    }
    if let Some(dec) = field(json, "decoder") {
        if dec.get("type").and_then(Value::as_str) != Some("ByteLevel") {
            return no("its decoder is not ByteLevel".into());
        }
    }

    // Added tokens: specials are never produced by encoding (ours never match their text);
    // non-special added tokens would be matched in text by the tokenizers crate, so leave those
    // files to it.
    let mut specials = Vec::new();
    for t in json.get("added_tokens").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]) {
        let id = t.get("id").and_then(Value::as_u64);
        let content = t.get("content").and_then(Value::as_str);
        let (Some(id), Some(content)) = (id, content) else {
            return no("an added token lacks id or content".into());
        };
        if !t.get("special").and_then(Value::as_bool).unwrap_or(false) {
            return no(format!("added token {content:?} is not special, so the text form would be matched"));
        }
        specials.push((content.to_string(), id as u32));
    }
    specials.sort_by_key(|s| s.1);

    let vocab =
        model.get("vocab").and_then(Value::as_object).ok_or_else(|| NotNative("its BPE model has no vocab".into()))?;
    let mut char_to_byte = rustc_hash::FxHashMap::default();
    for (b, c) in byte_to_char().iter().enumerate() {
        char_to_byte.insert(*c, b as u8);
    }
    let max_id = vocab.values().filter_map(Value::as_u64).chain(specials.iter().map(|s| s.1 as u64)).max().unwrap_or(0);
    let n = max_id as usize + 1;
    let mut tokens: Vec<Option<Vec<u8>>> = vec![None; n];
    for (s, id) in vocab {
        let Some(id) = id.as_u64() else {
            return no(format!("vocab entry {s:?} has a non-integer id"));
        };
        let bytes: Option<Vec<u8>> = s.chars().map(|c| char_to_byte.get(&c).copied()).collect();
        let Some(bytes) = bytes else {
            return no(format!("vocab entry {s:?} is not in the byte-level alphabet"));
        };
        tokens[id as usize] = Some(bytes);
    }
    for (_, id) in &specials {
        // GPT-2 also lists <|endoftext|> in its vocab; as a special it has no bytes (token_bytes 0).
        tokens[*id as usize] = None;
    }
    let lookup = |s: &str| vocab.get(s).and_then(Value::as_u64).map(|v| v as u32);
    let mut merges = Vec::new();
    for (i, m) in model.get("merges").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]).iter().enumerate() {
        let (a, b) = match m {
            Value::String(s) => match s.split_once(' ') {
                Some((a, b)) if !b.contains(' ') => (a.to_string(), b.to_string()),
                _ => return no(format!("merge #{i} {s:?} is not two tokens")),
            },
            Value::Array(v) if v.len() == 2 && v.iter().all(Value::is_string) => {
                (v[0].as_str().unwrap().to_string(), v[1].as_str().unwrap().to_string())
            }
            _ => return no(format!("merge #{i} is neither \"a b\" nor [a, b]")),
        };
        match (lookup(&a), lookup(&b), lookup(&format!("{a}{b}"))) {
            (Some(ia), Some(ib), Some(ir)) => merges.push((ia, ib, ir)),
            _ => return no(format!("merge #{i} ({a:?}, {b:?}) refers to tokens missing from the vocab")),
        }
    }
    let model = BpeModel::new(&pattern, &tokens, &merges).map_err(NotNative)?;
    Ok(Parsed { model, specials, vocab_size: n })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_map_is_gpt2s() {
        let m = byte_to_char();
        assert_eq!(m[b' ' as usize], 'Ġ');
        assert_eq!(m[b'\n' as usize], 'Ċ');
        assert_eq!(m[b'a' as usize], 'a');
        let mut all: Vec<char> = m.to_vec();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 256, "the map must be a bijection");
    }
}
