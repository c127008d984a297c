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
mod status;

const USAGE: &str = "\
usage: mmpool <command> [options]

commands:
  demo      simulate a decoding front end on a GPU-memory budget (see `mmpool demo --help`)
  status    show a pool shared by processes: `mmpool status NAME [--json]`
  unlink    remove a shared pool's name: `mmpool unlink NAME`
  bench-shared  cost of the shared pool against the in-process one; kill-to-grant time
  help      print this text";

#[cfg(not(loom))]
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or(&[]).to_vec();
    let code = match args.first().map(String::as_str) {
        Some("demo") => demo::main(&rest),
        Some("status") => status::status_main(&rest),
        Some("unlink") => status::unlink_main(&rest),
        Some("bench-shared") => bench_shared::bench_shared_main(&rest),
        Some("help" | "--help" | "-h") => {
            println!("{USAGE}");
            0
        }
        Some(other) => {
            eprintln!("mmpool: unknown command `{other}`\n{USAGE}");
            2
        }
        None => {
            eprintln!("{USAGE}");
            2
        }
    };
    std::process::exit(code);
}
