//! `mmpool-bench --quick` measures every implementation in every scenario it
//! can take part in, writes that as JSON, and mmpool's waiters never wake
//! without a grant. (Figures are never judged here: they are a benchmark's.)

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

const IMPLEMENTATIONS: [&str; 5] = ["floor", "mmpool", "ref-std", "ref-parking_lot", "tokio"];
const SCENARIOS: [&str; 12] = [
    "uncontended",
    "contended",
    "contended_200us",
    "contended_2ms",
    "contended_200us_work",
    "contended_2ms_work",
    "contended_200us_blocked",
    "contended_2ms_blocked",
    "wakeups",
    "starvation",
    "wait_time",
    "memory",
];

fn bench(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mmpool-bench")).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn rows<'a>(doc: &'a Value, scenario: &'a str, implementation: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    doc["rows"]
        .as_array()
        .expect("a rows array")
        .iter()
        .filter(move |r| r["scenario"] == scenario && r["implementation"] == implementation)
}

fn value(doc: &Value, scenario: &str, implementation: &str, metric: &str) -> Option<f64> {
    rows(doc, scenario, implementation).find(|r| r["metric"] == metric).and_then(|r| r["value"].as_f64())
}

#[test]
fn quick_run_covers_every_implementation_and_scenario() {
    let json = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-smoke/figures.json");
    let _ = std::fs::remove_file(&json);
    let (ok, stdout, stderr) = bench(&["--quick", "--json", json.to_str().unwrap()]);
    assert!(ok, "{stdout}\n{stderr}");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();

    assert_eq!(doc["implementations"], serde_json::json!(IMPLEMENTATIONS));
    assert_eq!(doc["scenarios"], serde_json::json!(SCENARIOS));
    for name in IMPLEMENTATIONS {
        assert!(stdout.contains(name), "the table lacks {name}:\n{stdout}");
        // The floor cannot make a thread wait: it takes part where no one waits.
        let takes_part: &[&str] = if name == "floor" { &["uncontended", "memory"] } else { &SCENARIOS };
        for scenario in SCENARIOS {
            let n = rows(&doc, scenario, name).count();
            assert_eq!(n > 0, takes_part.contains(&scenario), "{name} in {scenario}: {n} rows");
        }
        let ns = value(&doc, "uncontended", name, "ns_per_pair").expect("a time per pair");
        assert!(ns > 0.0, "{name}: {ns} ns per pair");
    }
    for name in &IMPLEMENTATIONS[1..] {
        for threads in [2, 4, 8, 16] {
            let ops = rows(&doc, "contended", name)
                .find(|r| r["count"] == threads && r["metric"] == "ops_per_s")
                .and_then(|r| r["value"].as_f64())
                .unwrap_or_else(|| panic!("{name}: no throughput at {threads} threads"));
            assert!(ops > 0.0, "{name}: {ops} ops/s at {threads} threads");
        }
        for scenario in ["contended_200us", "contended_2ms", "contended_200us_work", "contended_2ms_work"] {
            for threads in [8, 16] {
                let at = |metric: &str| {
                    rows(&doc, scenario, name)
                        .find(|r| r["count"] == threads && r["metric"] == metric)
                        .and_then(|r| r["value"].as_f64())
                };
                let ops = at("ops_per_s");
                assert!(ops.is_some_and(|o| o > 0.0), "{name}: {ops:?} ops/s in {scenario} at {threads} threads");
                assert!(at("voluntary_switches_per_op").is_some(), "{name}: no switch count in {scenario}");
            }
        }
        // A blocked hold sleeps, so each operation puts its worker to sleep
        // at least once: the switch count is read, and from the right field.
        for threads in [8, 16] {
            let voluntary = rows(&doc, "contended_200us_blocked", name)
                .find(|r| r["count"] == threads && r["metric"] == "voluntary_switches_per_op")
                .and_then(|r| r["value"].as_f64());
            assert!(voluntary.is_some_and(|v| v >= 1.0), "{name}: {voluntary:?} voluntary switches per blocked hold");
        }
        assert_eq!(value(&doc, "wakeups", name, "granted"), Some(16.0), "{name}: every waiter is granted");
    }
    // mmpool wakes only the request it granted: no wake-up is futile.
    assert_eq!(value(&doc, "wakeups", "mmpool", "futile"), Some(0.0));
    // The floor and tokio keep no record per lease; the others do.
    assert_eq!(value(&doc, "memory", "floor", "bytes_per_lease"), Some(0.0));
    assert!(value(&doc, "memory", "mmpool", "bytes_per_pool").unwrap() > 0.0);
}

#[test]
fn callgrind_mode_runs_the_pairs_it_is_asked_for_and_refuses_unknown_names() {
    let (ok, stdout, stderr) = bench(&["--callgrind-pair", "mmpool", "--pairs", "10"]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), "mmpool: 10 pairs (+1000 warm-up)");
    let (ok, stdout, stderr) = bench(&["--callgrind-pair", "mmpool-shared", "--pairs", "10"]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), "mmpool-shared: 10 pairs (+1000 warm-up)");
    let (ok, _, stderr) = bench(&["--callgrind-pair", "nothing-by-this-name"]);
    assert!(!ok);
    assert!(stderr.contains("nothing-by-this-name"), "{stderr}");
    let (ok, stdout, stderr) = bench(&["--callgrind-handoff", "mmpool", "--rounds", "3"]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), "mmpool: 3 rounds of two hand-offs");
    let (ok, _, stderr) = bench(&["--callgrind-handoff", "floor"]);
    assert!(!ok && stderr.contains("no blocking implementation"), "the floor cannot hand off: {stderr}");
    let (ok, stdout, stderr) = bench(&["--fragmentation", "--quick"]);
    assert!(ok, "{stderr}");
    for name in ["bytes only", "mmpool", "first-fit", "offset-allocator", "rlsf"] {
        assert!(stdout.lines().nth(2).is_some_and(|header| header.contains(name)), "{name}: {stdout}");
    }
    let (ok, _, stderr) = bench(&["--frobnicate"]);
    assert!(!ok && stderr.contains("unknown option"), "{stderr}");
}

/// A run without `--json` writes nothing, wherever it runs; a relative
/// `--json` path lands in the working directory, and nothing else does.
#[test]
fn a_file_is_written_only_when_asked() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("bench-json-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let in_dir = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_mmpool-bench")).args(args).current_dir(&dir).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let files = || -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut dirs = vec![dir.clone()];
        while let Some(d) = dirs.pop() {
            for entry in std::fs::read_dir(d).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path)
                } else {
                    out.push(path)
                }
            }
        }
        out
    };
    let stdout = in_dir(&["--quick"]);
    assert!(stdout.contains("uncontended acquire+release"), "the bench ran and printed its table:\n{stdout}");
    assert_eq!(files(), Vec::<PathBuf>::new(), "no --json, no file");
    let stdout = in_dir(&["--quick", "--json", "out/figures.json"]);
    assert!(stdout.contains("figures written to out/figures.json"), "{stdout}");
    assert_eq!(files(), [dir.join("out/figures.json")]);
    std::fs::remove_dir_all(&dir).unwrap();
}
