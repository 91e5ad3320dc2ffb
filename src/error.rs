//! One error type for the library. Binaries wrap it with `anyhow` context; every variant's message
//! says what went wrong and, where the user can fix it, how.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "no GPU adapter found for backend(s) {backends}.\n  HINT: install a Vulkan driver — your GPU vendor's, \
         or the CPU driver with `apt-get install mesa-vulkan-drivers` — then check with `wgpt adapters`"
    )]
    NoAdapter { backends: String },

    #[error("no adapter matches `{query}`; available adapters:\n{available}\n  HINT: pass an index or a substring of a name above to --adapter (or WGPT_ADAPTER)")]
    AdapterNotFound { query: String, available: String },

    #[error("unknown backend `{0}`; expected one of: vulkan, metal, dx12, gl, all")]
    UnknownBackend(String),

    #[error("adapter `{adapter}` lacks the required feature {feature}: {why}")]
    MissingFeature { adapter: String, feature: &'static str, why: &'static str },

    #[error("could not open a device on `{adapter}`: {message}")]
    RequestDevice { adapter: String, message: String },

    #[error("shader {file} (entry point `{entry}`) failed to compile or validate:\n{message}")]
    Shader { file: &'static str, entry: &'static str, message: String },

    #[error("out of GPU memory allocating {what} ({bytes} bytes)\n  HINT: lower the batch size or the model size")]
    OutOfMemory { what: String, bytes: u64 },

    #[error("{what} needs a {bytes}-byte buffer but the adapter allows at most {max} bytes per buffer")]
    BufferTooLarge { what: String, bytes: u64, max: u64 },

    #[error("the GPU device was lost ({reason})\n  HINT: a driver reset or a kernel that ran too long; rerun, and if it repeats try a smaller batch")]
    DeviceLost { reason: String },

    #[error("wgpu validation error in {context}: {message}")]
    Validation { context: String, message: String },

    /// A `WGPT_*` environment variable holds a value wgpt cannot use.
    #[error("environment variable {var}: {message}")]
    Env { var: &'static str, message: String },

    /// Saved state (a checkpoint's optimizer state) does not fit what it is loaded into.
    #[error("{context} does not match: {message}")]
    State { context: String, message: String },

    #[error("bad configuration: {message}")]
    Config { message: String },

    #[error("{op}: {message}")]
    Shape { op: &'static str, message: String },

    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },

    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
