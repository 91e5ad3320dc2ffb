//! Shard download (`wgpt data download`) against a local HTTP/1.1 server on 127.0.0.1 that drops
//! connections, returns errors, ignores Range requests and sends corrupt bytes, as scripted per
//! test: retries, resumption, verification, and what a failed download leaves behind.

mod common;

use common::{synthetic_docs, Scratch};
use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wgpt::data::{download, write_text_parquet, DataConfig, Dataset, DownloadOptions, RemoteDataset, Split};

#[derive(Clone, Debug)]
enum Act {
    /// Serve normally (206 for a Range request).
    Ok,
    /// Answer with this status and no body.
    Status(u16),
    /// Start a normal answer but close the connection after this many body bytes.
    Cut(usize),
    /// Ignore any Range header and send the whole file with 200.
    IgnoreRange,
    /// Send bytes of the right length that are not the file.
    Garbage,
    /// Read the request, then close the connection without answering.
    Close,
}

#[derive(Default)]
struct ServerState {
    files: HashMap<String, Vec<u8>>,
    script: HashMap<String, VecDeque<Act>>,
    /// (path, Range start) of every request, in arrival order.
    log: Vec<(String, Option<u64>)>,
}

struct Server {
    url: String,
    state: Arc<Mutex<ServerState>>,
}

impl Server {
    fn start(files: HashMap<String, Vec<u8>>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(ServerState { files, ..Default::default() }));
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let st = st.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, &st);
                });
            }
        });
        Server { url, state }
    }

    fn script(&self, path: &str, acts: &[Act]) {
        self.state.lock().unwrap().script.insert(path.to_string(), acts.iter().cloned().collect());
    }

    fn requests(&self, path: &str) -> Vec<Option<u64>> {
        self.state.lock().unwrap().log.iter().filter(|r| r.0 == path).map(|r| r.1).collect()
    }
}

fn serve(conn: TcpStream, st: &Mutex<ServerState>) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/").trim_start_matches('/').to_string();
    let mut range = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("range: bytes=") {
            range = v.trim().trim_end_matches('-').parse::<u64>().ok();
        }
    }
    let (act, file) = {
        let mut s = st.lock().unwrap();
        s.log.push((path.clone(), range));
        let act = s.script.get_mut(&path).and_then(VecDeque::pop_front).unwrap_or(Act::Ok);
        (act, s.files.get(&path).cloned())
    };
    let mut out = conn;
    if let Act::Close = act {
        return out.shutdown(std::net::Shutdown::Both);
    }
    let Some(file) = file else {
        return write!(out, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    };
    let n = file.len() as u64;
    let (status, start) = match (&act, range) {
        (Act::Status(code), _) => {
            return write!(out, "HTTP/1.1 {code} Oops\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        }
        (Act::IgnoreRange, _) | (_, None) => (200, 0),
        (_, Some(s)) if s >= n => {
            return write!(
                out,
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{n}\r\nConnection: close\r\n\r\n"
            )
        }
        (_, Some(s)) => (206, s),
    };
    let mut body = file[start as usize..].to_vec();
    if let Act::Garbage = act {
        body.iter_mut().enumerate().for_each(|(i, b)| *b = (i * 7 + 3) as u8);
    }
    let mut head = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    if status == 206 {
        head += &format!("Content-Range: bytes {start}-{}/{n}\r\n", n - 1);
    }
    out.write_all(format!("{head}\r\n").as_bytes())?;
    if let Act::Cut(k) = act {
        out.write_all(&body[..k.min(body.len())])?;
        out.flush()?;
        return out.shutdown(std::net::Shutdown::Both); // drop mid-body
    }
    out.write_all(&body)
}

/// Four small shards (0, 1, 2 and the "last" shard 7) as served bytes.
fn remote_shards() -> HashMap<String, Vec<u8>> {
    let src = Scratch::new("dl-src");
    let mut files = HashMap::new();
    for (k, i) in [0usize, 1, 2, 7].into_iter().enumerate() {
        let docs = synthetic_docs(100 + k as u64, 60);
        let name = format!("shard_{i:05}.parquet");
        write_text_parquet(&src.join(&name), &[docs[..30].to_vec(), docs[30..].to_vec()]).unwrap();
        files.insert(name.clone(), std::fs::read(src.join(&name)).unwrap());
    }
    files
}

fn dl_opts(server: &Server, dir: &Path, shards: usize) -> DownloadOptions {
    let mut o = DownloadOptions::new(RemoteDataset::FinewebEdu, shards, dir.to_path_buf());
    o.base_url = server.url.clone();
    o.max_shard = 7;
    o.workers = 3;
    o.attempts = 5;
    o.backoff = Duration::from_millis(5);
    o.read_timeout = Duration::from_secs(10);
    o
}

#[test]
fn download_retries_resumes_verifies_and_skips_complete_shards() {
    let files = remote_shards();
    let server = Server::start(files.clone());
    let s0 = files["shard_00000.parquet"].len();
    // Shard 0 drops after a third of the body, then resumes with a Range request.
    server.script("shard_00000.parquet", &[Act::Cut(s0 / 3)]);
    // Shard 1 fails twice with server errors.
    server.script("shard_00001.parquet", &[Act::Status(500), Act::Status(503)]);
    // Shard 2 drops after 100 bytes, then the server ignores the Range: the file restarts.
    server.script("shard_00002.parquet", &[Act::Cut(100), Act::IgnoreRange]);
    // The validation shard first arrives corrupted: the integrity check rejects it.
    server.script("shard_00007.parquet", &[Act::Garbage]);

    let dir = Scratch::new("dl-ok");
    let report = download(&dl_opts(&server, dir.path(), 3), &|l| eprintln!("{l}")).unwrap();
    assert_eq!(report.fetched.len(), 4);
    assert!(report.retries >= 5, "{report:?}");
    for (name, bytes) in &files {
        assert_eq!(&std::fs::read(dir.join(name)).unwrap(), bytes, "{name} differs from the served file");
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| !n.to_string_lossy().ends_with(".parquet"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_eq!(
        server.requests("shard_00000.parquet"),
        vec![None, Some((s0 / 3) as u64)],
        "shard 0 must resume where it was cut"
    );
    assert_eq!(server.requests("shard_00001.parquet").len(), 3);
    assert_eq!(server.requests("shard_00002.parquet"), vec![None, Some(100)]);
    assert_eq!(server.requests("shard_00007.parquet"), vec![None, None], "a corrupt file restarts from zero");
    // The downloaded directory is a dataset whose last shard is validation.
    let ds = Dataset::open(&DataConfig::new(dir.path())).unwrap();
    assert_eq!((ds.split_docs(Split::Train), ds.split_docs(Split::Val)), (180, 60));

    // A second run verifies and skips everything without a single request.
    let before = server.state.lock().unwrap().log.len();
    let report = download(&dl_opts(&server, dir.path(), 3), &|_| {}).unwrap();
    assert_eq!((report.fetched.len(), report.present.len()), (0, 4));
    assert_eq!(server.state.lock().unwrap().log.len(), before);
}

#[test]
fn interrupted_download_resumes_in_a_later_run_and_failures_are_clear() {
    let files = remote_shards();
    let server = Server::start(files.clone());
    let n = files["shard_00000.parquet"].len();
    let dir = Scratch::new("dl-partial");
    // Run 1: every attempt drops after 1/4 of what is left; two attempts are not enough.
    let mut o = dl_opts(&server, dir.path(), 1);
    o.attempts = 2;
    server.script("shard_00000.parquet", &[Act::Cut(n / 4), Act::Cut(n / 4)]);
    let e = download(&o, &|_| {}).unwrap_err().to_string();
    assert!(
        e.contains("shard_00000.parquet") && e.contains("giving up after 2 attempts") && e.contains("rerun"),
        "{e}"
    );
    assert!(!dir.join("shard_00000.parquet").exists(), "an incomplete shard must never appear under its final name");
    let kept = std::fs::metadata(dir.join("shard_00000.parquet.partial")).unwrap().len() as usize;
    assert_eq!(kept, 2 * (n / 4));
    // Run 2 continues from the kept bytes.
    download(&dl_opts(&server, dir.path(), 1), &|_| {}).unwrap();
    assert_eq!(std::fs::read(dir.join("shard_00000.parquet")).unwrap(), files["shard_00000.parquet"]);
    assert_eq!(server.requests("shard_00000.parquet").last().unwrap(), &Some(kept as u64));

    // A missing shard is not retried, and the message says what to check.
    let dir = Scratch::new("dl-404");
    let mut o = dl_opts(&server, dir.path(), 1);
    o.max_shard = 9;
    let e = download(&o, &|_| {}).unwrap_err().to_string();
    assert!(e.contains("shard_00009.parquet") && e.contains("404") && e.contains("--base-url"), "{e}");
    assert_eq!(server.requests("shard_00009.parquet").len(), 1);

    // A corrupt shard already on disk is reported, not replaced.
    let dir = Scratch::new("dl-corrupt");
    std::fs::write(dir.join("shard_00007.parquet"), b"not parquet").unwrap();
    let e = download(&dl_opts(&server, dir.path(), 0), &|_| {}).unwrap_err().to_string();
    assert!(e.contains("shard_00007.parquet") && e.contains("delete it"), "{e}");
    assert_eq!(std::fs::read(dir.join("shard_00007.parquet")).unwrap(), b"not parquet");
}

/// A download into a directory that does not exist yet creates it only when every shard has
/// arrived: a failure leaves no directory (so a rerun, or the trainer's check for data, does not
/// mistake an empty or half-filled one for a dataset), keeps what arrived beside it for the
/// next run, and removes even that when nothing arrived. Transient failures are retried.
#[test]
fn failed_download_leaves_no_data_directory_and_a_retry_completes_it() {
    let files = remote_shards();
    let server = Server::start(files.clone());
    let root = Scratch::new("dl-fresh");
    let dir = root.join("base_data");
    let staging = root.join("base_data.partial");

    // Every request fails: nothing is left behind at all.
    let mut o = dl_opts(&server, &dir, 1);
    o.attempts = 2;
    server.script("shard_00000.parquet", &[Act::Status(500), Act::Close]);
    server.script("shard_00007.parquet", &[Act::Close, Act::Status(503)]);
    let e = download(&o, &|_| {}).unwrap_err().to_string();
    assert!(!dir.exists() && !staging.exists(), "a download that received nothing must leave nothing: {e}");
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
    assert!(e.contains("giving up after 2 attempts") && e.contains("nothing was created"), "{e}");

    // The validation shard arrives, shard 0 keeps failing: still no data directory, and the
    // shard that did arrive waits beside it.
    server.script("shard_00000.parquet", &[Act::Status(500), Act::Status(500)]);
    let e = download(&o, &|_| {}).unwrap_err().to_string();
    assert!(!dir.exists(), "a failed download must not create its directory: {e}");
    assert!(e.contains("rerun the same command") && e.contains("base_data.partial"), "{e}");
    assert_eq!(std::fs::read(staging.join("shard_00007.parquet")).unwrap(), files["shard_00007.parquet"]);
    let before = server.requests("shard_00007.parquet").len();

    // The rerun, with a transient failure (a dropped connection) on the way, completes and
    // publishes the directory; the shard already there is not fetched again.
    server.script("shard_00000.parquet", &[Act::Close]);
    let report = download(&dl_opts(&server, &dir, 1), &|_| {}).unwrap();
    assert!(report.retries >= 1, "{report:?}");
    assert_eq!(report.fetched, vec![dir.join("shard_00000.parquet")]);
    assert_eq!(report.present, vec![dir.join("shard_00007.parquet")]);
    assert_eq!(server.requests("shard_00007.parquet").len(), before);
    assert!(!staging.exists());
    for name in ["shard_00000.parquet", "shard_00007.parquet"] {
        assert_eq!(std::fs::read(dir.join(name)).unwrap(), files[name], "{name}");
    }
    let ds = Dataset::open(&DataConfig::new(&dir)).unwrap();
    assert_eq!((ds.split_docs(Split::Train), ds.split_docs(Split::Val)), (60, 60));
}

#[test]
fn cli_download_and_info() {
    let server = Server::start(remote_shards());
    server.script("shard_00001.parquet", &[Act::Cut(500)]);
    let dir = Scratch::new("dl-cli");
    let d = dir.join("shards");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wgpt"))
        .args([
            "data",
            "download",
            "--shards",
            "2",
            "--max-shard",
            "7",
            "--base-url",
            &server.url,
            "--backoff-secs",
            "0.01",
        ])
        .args(["--dir", d.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("3 fetched") && stdout.contains("1 retried"), "{stdout}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wgpt"))
        .args(["data", "info", "--verify", "--data", d.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("val: 60 documents") && stdout.contains("verified: 2 row group(s)"),
        "{stdout}"
    );
    assert_eq!(RemoteDataset::parse("climbmix").unwrap().max_shard(), 6542);
}
