//! The `mmpool` command: `demo` (the main job), and tools for operators.
//!
//! Under `--cfg loom` (model checking of the engine) the command is empty:
//! its parts use the C boundary, which loom builds leave out.
#![cfg_attr(loom, allow(dead_code, unused_imports))]

#[cfg(loom)]
fn main() {}

#[cfg(not(loom))]
mod args;
#[cfg(not(loom))]
mod bench_shared;
#[cfg(not(loom))]
mod demo;
#[cfg(not(loom))]
mod demo_async;
#[cfg(not(loom))]
mod demo_placed;
#[cfg(not(loom))]
mod exporter;
#[cfg(not(loom))]
mod exposition;
#[cfg(not(loom))]
mod handoff_rows;
#[cfg(not(loom))]
mod status;

/// The commands and what each does, for `mmpool --help`.
const COMMANDS: [(&str, &str); 6] = [
    ("demo", "simulate a decoding front end on a GPU-memory budget (see `mmpool demo --help`)"),
    ("status", "show a pool shared by processes: `mmpool status NAME [--json | --prometheus]`"),
    ("exporter", "serve shared pools' figures to Prometheus: `mmpool exporter NAME... --listen ADDR`"),
    ("unlink", "remove a shared pool's name: `mmpool unlink NAME`"),
    ("bench-shared", "cost of the shared pool against the in-process one; kill-to-grant time"),
    ("help", "print this text"),
];

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The top-level help: one line a command, the descriptions in one column.
fn usage() -> String {
    let width = COMMANDS.iter().map(|(name, _)| name.len()).max().unwrap_or(0) + 2;
    let mut out = String::from("usage: mmpool <command> [options]\n       mmpool --version\n\ncommands:\n");
    for (name, what) in COMMANDS {
        out += &format!("  {name:<width$}{what}\n");
    }
    out + "\nEvery command takes --help and --version; flags take `--flag value` or `--flag=value`."
}

#[cfg(not(loom))]
fn main() {
    // Output into a closed pipe (`mmpool status NAME | head -1`) ends the
    // command quietly, as it ends other Unix tools, instead of a panic in
    // `println!`: Rust programs start with SIGPIPE ignored.
    // SAFETY: restoring a signal's default disposition before any thread
    // starts; no handler runs.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or(&[]).to_vec();
    let command = args.first().map(String::as_str);
    // `--version` anywhere among a command's own flags prints the version.
    let known = COMMANDS.iter().any(|(name, _)| Some(*name) == command);
    if command == Some("--version") || (known && rest.iter().any(|a| a == "--version")) {
        println!("mmpool {VERSION}");
        std::process::exit(0);
    }
    let code = match command {
        Some("demo") => demo::main(&rest),
        Some("status") => status::status_main(&rest),
        Some("unlink") => status::unlink_main(&rest),
        Some("exporter") => exporter::main(&rest),
        Some("bench-shared") => bench_shared::bench_shared_main(&rest),
        Some("help" | "--help" | "-h") => {
            println!("{}", usage());
            0
        }
        Some(other) => {
            eprintln!("mmpool: unknown command `{other}`\n{}", usage());
            2
        }
        None => {
            eprintln!("{}", usage());
            2
        }
    };
    std::process::exit(code);
}
