//! Parquet shards through the `parquet` crate's column API (no arrow): open a shard, find its
//! `text` column, read one row group's strings; write small shards in nanochat's layout (zstd,
//! no dictionary, no statistics) for tests and fixtures.

use crate::error::{Error, Result};
use parquet::basic::{Compression, Type as PhysicalType, ZstdLevel};
use parquet::column::reader::ColumnReader;
use parquet::data_type::{ByteArray, ByteArrayType};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::reader::FileReader;
use parquet::file::serialized_reader::SerializedFileReader;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn file_err(path: &Path, message: String) -> Error {
    Error::File { path: path.to_path_buf(), message }
}

const REDOWNLOAD_HINT: &str =
    "HINT: the file is corrupt or truncated (an interrupted copy or download?); delete it and fetch it \
                               again (`wgpt data download` skips shards that are already complete)";

/// An open shard: the reader, which column holds the text, and the rows per row group.
pub(crate) struct ShardFile {
    pub path: PathBuf,
    reader: SerializedFileReader<File>,
    column: usize,
    pub row_groups: Vec<u64>,
}

impl ShardFile {
    pub fn open(path: &Path, text_field: &str) -> Result<Self> {
        let file = File::open(path).map_err(|e| file_err(path, format!("cannot open: {e}")))?;
        let reader = SerializedFileReader::new(file)
            .map_err(|e| file_err(path, format!("is not a readable parquet file ({e})\n  {REDOWNLOAD_HINT}")))?;
        let meta = reader.metadata();
        let schema = meta.file_metadata().schema_descr();
        let names: Vec<String> = schema.columns().iter().map(|c| c.path().string()).collect();
        let Some(column) = names.iter().position(|n| n == text_field) else {
            return Err(file_err(
                path,
                format!(
                    "has no `{text_field}` column (columns: {})\n  HINT: nanochat shards hold one string column `text`; \
                     rewrite the file with that column, or pass --text-field with the column that holds the documents",
                    names.join(", ")
                ),
            ));
        };
        let descr = schema.column(column);
        if descr.physical_type() != PhysicalType::BYTE_ARRAY || descr.max_rep_level() > 0 {
            return Err(file_err(
                path,
                format!(
                    "column `{text_field}` is {:?}{}, not a string column\n  HINT: the documents must be a plain string column",
                    descr.physical_type(),
                    if descr.max_rep_level() > 0 { " (repeated)" } else { "" }
                ),
            ));
        }
        // Row counts come from the footer: a dataset's chunk layout (and so every loader
        // position) is known without decoding any data.
        let row_groups = meta.row_groups().iter().map(|rg| rg.num_rows().max(0) as u64).collect();
        Ok(ShardFile { path: path.to_path_buf(), reader, column, row_groups })
    }

    /// The documents of row group `rg`, in row order; a null is an empty document.
    pub fn read_row_group(&self, rg: usize) -> Result<Vec<String>> {
        let err = |what: String| file_err(&self.path, format!("row group {rg}: {what}\n  {REDOWNLOAD_HINT}"));
        let group = self.reader.get_row_group(rg).map_err(|e| err(format!("cannot read ({e})")))?;
        let rows = group.metadata().num_rows().max(0) as usize;
        let max_def = group.metadata().column(self.column).column_descr().max_def_level();
        let ColumnReader::ByteArrayColumnReader(mut col) =
            group.get_column_reader(self.column).map_err(|e| err(format!("cannot read the text column ({e})")))?
        else {
            return Err(err("text column is not a byte array".into()));
        };
        // One call may stop at a page boundary, so read until the row group's rows are all in.
        let mut values: Vec<ByteArray> = Vec::with_capacity(rows);
        let mut defs: Vec<i16> = Vec::with_capacity(if max_def > 0 { rows } else { 0 });
        let mut records = 0;
        while records < rows {
            let def = if max_def > 0 { Some(&mut defs) } else { None };
            let (r, _, _) = col
                .read_records(rows - records, def, None, &mut values)
                .map_err(|e| err(format!("cannot decode ({e})")))?;
            if r == 0 {
                return Err(err(format!("holds {records} rows but its metadata says {rows}")));
            }
            records += r;
        }
        let to_string = |v: ByteArray| {
            String::from_utf8(v.data().to_vec()).map_err(|e| err(format!("a document is not UTF-8 ({e})")))
        };
        if max_def == 0 {
            return values.into_iter().map(to_string).collect();
        }
        // Nullable column: values hold only the non-null entries; definition levels say which.
        let mut it = values.into_iter();
        defs.iter()
            .map(|&d| {
                if d == max_def {
                    it.next().map_or_else(|| Err(err("fewer values than levels".into())), to_string)
                } else {
                    Ok(String::new())
                }
            })
            .collect()
    }
}

/// What a verified shard holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardSummary {
    pub row_groups: usize,
    pub rows: u64,
}

/// Open `path` as a parquet shard with a `text` string column and decode every row group: the
/// integrity check for downloads and `wgpt data info`.
pub fn check_parquet_shard(path: &Path) -> Result<ShardSummary> {
    let shard = ShardFile::open(path, "text")?;
    let mut rows = 0;
    for rg in 0..shard.row_groups.len() {
        rows += shard.read_row_group(rg)?.len() as u64;
    }
    Ok(ShardSummary { row_groups: shard.row_groups.len(), rows })
}

/// Write `row_groups` (each a list of documents) as a shard in nanochat's layout: one required
/// string column `text`, zstd level 3, no dictionary, no statistics. Written to a temporary
/// sibling and renamed, so `path` is never half-written.
pub fn write_text_parquet(path: &Path, row_groups: &[Vec<String>]) -> Result<()> {
    let io = |e: std::io::Error| file_err(path, format!("cannot write: {e}"));
    let pq = |e: parquet::errors::ParquetError| file_err(path, format!("cannot write parquet: {e}"));
    let schema = Arc::new(parse_message_type("message schema { REQUIRED BYTE_ARRAY text (UTF8); }").map_err(pq)?);
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).map_err(pq)?))
            .set_dictionary_enabled(false)
            .set_statistics_enabled(EnabledStatistics::None)
            .build(),
    );
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("shard");
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| -> Result<()> {
        let file = File::create(&tmp).map_err(io)?;
        let mut writer = SerializedFileWriter::new(file, schema, props).map_err(pq)?;
        for docs in row_groups {
            let mut rg = writer.next_row_group().map_err(pq)?;
            if let Some(mut col) = rg.next_column().map_err(pq)? {
                let values: Vec<ByteArray> = docs.iter().map(|d| ByteArray::from(d.as_bytes().to_vec())).collect();
                col.typed::<ByteArrayType>().write_batch(&values, None, None).map_err(pq)?;
                col.close().map_err(pq)?;
            }
            rg.close().map_err(pq)?;
        }
        let file = writer.into_inner().map_err(pq)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
