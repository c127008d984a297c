//! `mmpool status NAME [--json | --prometheus]` and `mmpool unlink NAME`: operators' view of a
//! pool shared by the processes of a host.

use mmpool::pool::reservations;
use mmpool::pool::shared::{self, LockHolder, SharedPool, SharedSnapshot};

use crate::exposition::{render, PoolFigures};
use crate::handoff_rows;

const STATUS_USAGE: &str = "\
usage: mmpool status NAME [--json | --prometheus]

Prints the shared pool NAME (/dev/shm/mmpool.NAME): total, in use, peak,
waiters, counters, the limits chosen at its creation, and a table of the
attached processes (pid, leases, bytes held, requests waiting), then the
outstanding hand-offs (token id, producer pid, age, bytes, parts left, the pids
holding claimed parts). Processes that
died are reclaimed first. If a process keeps the pool's lock, the figures are
read without it and the holder's pid is shown with how long it has held it.
--json prints one JSON object instead; --prometheus the figures in Prometheus'
text exposition format, as `mmpool exporter` serves them.";

const UNLINK_USAGE: &str = "\
usage: mmpool unlink NAME

Removes the name of the shared pool NAME (and temporary files that creators
killed mid-build left behind). Processes attached keep using the pool; the
next process that opens NAME and may create it (MMPOOL_SHARED_NAME with
MMPOOL_SHARED_GIB set, or mmpool.SharedPool(NAME, total_bytes)) makes a new
pool with its own total.";

fn gib(bytes: u64) -> String {
    format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
}

fn text(s: &SharedSnapshot) -> String {
    let st = &s.stats;
    let mut out = format!("shared pool {:?} ({})\n", s.name, s.path);
    let rows = [
        ("total", format!("{} bytes ({})", st.total_bytes, gib(st.total_bytes))),
        ("in use", format!("{} bytes ({})", st.in_use_bytes, gib(st.in_use_bytes))),
        ("available", format!("{} bytes", st.available_bytes)),
        ("peak in use", format!("{} bytes ({})", st.peak_in_use_bytes, gib(st.peak_in_use_bytes))),
        ("leases", st.outstanding_leases.to_string()),
        ("waiters", st.waiters.to_string()),
        ("closed", if s.closed { "yes" } else { "no" }.to_string()),
        (
            "grants",
            format!(
                "{} ({} waited; longest wait {:.1} ms)",
                st.grants,
                st.waited_grants,
                st.wait_ns_max as f64 / 1e6
            ),
        ),
        (
            "refusals",
            format!(
                "{} timeouts, {} would-block, {} over capacity, {} closed",
                st.timeouts, st.would_blocks, st.capacity_rejections, st.closed_rejections
            ),
        ),
        ("recoveries", format!("{} dead processes reclaimed, {} locks taken over", s.reaped_procs, s.lock_recoveries)),
        (
            "limits",
            format!(
                "{} processes, {} leases and tickets, {} waiters, {} hand-offs",
                s.limits.max_processes, s.limits.max_leases, s.limits.max_waiters, s.limits.max_handoffs
            ),
        ),
        (
            "reserved",
            format!(
                "{} bytes outside leases; budget plus reservations {} bytes ({})",
                st.reserved_bytes,
                st.total_bytes.saturating_add(st.reserved_bytes),
                gib(st.total_bytes.saturating_add(st.reserved_bytes))
            ),
        ),
        ("lock", lock_text(s.lock_holder.as_ref())),
    ];
    for (k, v) in rows {
        out += &format!("  {k:<12}{v}\n");
    }
    let others: Vec<_> = s.procs.iter().filter(|p| !p.is_self).collect();
    out += &format!("processes attached: {}\n", others.len());
    if !others.is_empty() {
        out += &format!("  {:>8}  {:>6}  {:>20}  {:>7}  {:>20}\n", "PID", "LEASES", "BYTES HELD", "WAITING", "RESERVED");
        for p in others {
            let reserved = reservations::total(&p.reservations);
            out += &format!("  {:>8}  {:>6}  {:>20}  {:>7}  {:>20}\n", p.pid, p.leases, p.bytes_held, p.waiting, reserved);
            for r in &p.reservations {
                out += &format!("  {:>8}    reserved {:?}: {} bytes\n", "", r.label, r.bytes);
            }
        }
    }
    out + &handoff_rows::text(&s.handoffs)
}

fn lock_text(holder: Option<&LockHolder>) -> String {
    match holder {
        None => "free (taken and released for this report)".into(),
        Some(h) => format!(
            "held by pid {} (slot {}, {}) for {:.1} s; figures read without the lock",
            h.pid,
            h.slot,
            if h.alive { "alive" } else { "gone" },
            h.held_for.as_secs_f64()
        ),
    }
}

fn lock_json(holder: Option<&LockHolder>) -> String {
    match holder {
        None => "null".into(),
        Some(h) => format!(
            "{{\"pid\":{},\"slot\":{},\"alive\":{},\"held_ns\":{}}}",
            h.pid,
            h.slot,
            h.alive,
            h.held_for.as_nanos()
        ),
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out += "\\\"",
            '\\' => out += "\\\\",
            c if (c as u32) < 0x20 => out += &format!("\\u{:04x}", c as u32),
            c => out.push(c),
        }
    }
    out + "\""
}

fn json(s: &SharedSnapshot) -> String {
    let st = &s.stats;
    let procs: Vec<String> = s
        .procs
        .iter()
        .filter(|p| !p.is_self)
        .map(|p| {
            let reserved: Vec<String> = p
                .reservations
                .iter()
                .map(|r| format!("{{\"label\":{},\"bytes\":{}}}", json_string(&r.label), r.bytes))
                .collect();
            format!(
                "{{\"pid\":{},\"leases\":{},\"bytes_held\":{},\"waiting\":{},\"reservations\":[{}]}}",
                p.pid,
                p.leases,
                p.bytes_held,
                p.waiting,
                reserved.join(",")
            )
        })
        .collect();
    let numbers = [
        ("total_bytes", st.total_bytes),
        ("in_use_bytes", st.in_use_bytes),
        ("available_bytes", st.available_bytes),
        ("peak_in_use_bytes", st.peak_in_use_bytes),
        ("outstanding_leases", st.outstanding_leases),
        ("waiters", st.waiters),
        ("grants", st.grants),
        ("waited_grants", st.waited_grants),
        ("wait_ns_total", st.wait_ns_total),
        ("wait_ns_max", st.wait_ns_max),
        ("timeouts", st.timeouts),
        ("would_blocks", st.would_blocks),
        ("capacity_rejections", st.capacity_rejections),
        ("closed_rejections", st.closed_rejections),
        ("reserved_bytes", st.reserved_bytes),
        ("reaped_processes", s.reaped_procs),
        ("lock_recoveries", s.lock_recoveries),
        ("max_processes", u64::from(s.limits.max_processes)),
        ("max_leases", u64::from(s.limits.max_leases)),
        ("max_waiters", u64::from(s.limits.max_waiters)),
        ("max_handoffs", u64::from(s.limits.max_handoffs)),
    ];
    let mut fields = vec![
        format!("\"name\":{}", json_string(&s.name)),
        format!("\"path\":{}", json_string(&s.path)),
        format!("\"closed\":{}", s.closed),
    ];
    fields.extend(numbers.iter().map(|(k, v)| format!("\"{k}\":{v}")));
    fields.push(format!("\"lock_holder\":{}", lock_json(s.lock_holder.as_ref())));
    fields.push(format!("\"processes\":[{}]", procs.join(",")));
    fields.push(format!("\"handoffs\":{}", handoff_rows::json(&s.handoffs)));
    format!("{{{}}}", fields.join(","))
}

/// How `mmpool status` prints the figures.
enum Format {
    Text,
    Json,
    Prometheus,
}

/// `mmpool status NAME [--json | --prometheus]`.
pub fn status_main(args: &[String]) -> i32 {
    let (mut name, mut format) = (None, Format::Text);
    for a in args {
        match a.as_str() {
            "--json" => format = Format::Json,
            "--prometheus" => format = Format::Prometheus,
            "-h" | "--help" => {
                println!("{STATUS_USAGE}");
                return 0;
            }
            other if name.is_none() && !other.starts_with('-') => name = Some(other.to_string()),
            other => {
                eprintln!("mmpool status: unexpected argument `{other}`\n{STATUS_USAGE}");
                return 2;
            }
        }
    }
    let Some(name) = name else {
        eprintln!("{STATUS_USAGE}");
        return 2;
    };
    let snapshot = SharedPool::inspect(&name);
    match snapshot {
        Ok(s) => {
            match format {
                Format::Text => print!("{}", text(&s)),
                Format::Json => println!("{}", json(&s)),
                Format::Prometheus => print!("{}", render(&[PoolFigures { name: &name, snapshot: Some(&s) }])),
            }
            0
        }
        Err(e) => {
            eprintln!("mmpool status: {}", missing_pool(&name, &e).unwrap_or_else(|| e.to_string()));
            1
        }
    }
}

/// What an operator runs or sets to have the pool `name`, when opening it
/// failed because its file does not exist.
fn missing_pool(name: &str, e: &mmpool::Error) -> Option<String> {
    let path = shared::path_of(name);
    let absent = std::fs::symlink_metadata(&path).is_err_and(|m| m.kind() == std::io::ErrorKind::NotFound);
    if !matches!(e, mmpool::Error::System(_)) || !absent {
        return None;
    }
    Some(format!(
        "no shared pool named {name:?} ({path} does not exist).
A process creates it when it first uses the pool, and it stays until `mmpool unlink {name}` or a reboot:
  - start the server and decoder processes with MMPOOL_SHARED_NAME={name} and
    MMPOOL_SHARED_GIB=<total in GiB> (or MMPOOL_SHARED_TOTAL_BYTES=<bytes>) set, or
  - from code: mmpool.SharedPool({name:?}, total_bytes) in Python,
    mmpool_open_shared(\"{name}\", total_bytes, MMPOOL_SHARED_CREATE, &pool) in C.
`mmpool status` only reads a pool that exists, never creates one: run it on the same host,
as the user that created the pool."
    ))
}

/// `mmpool unlink NAME`.
pub fn unlink_main(args: &[String]) -> i32 {
    match args {
        [flag] if flag == "-h" || flag == "--help" => {
            println!("{UNLINK_USAGE}");
            0
        }
        [name] => match shared::unlink(name) {
            Ok(()) => {
                println!("removed {}", shared::path_of(name));
                0
            }
            Err(e) => {
                eprintln!("mmpool unlink: {e}");
                1
            }
        },
        _ => {
            eprintln!("{UNLINK_USAGE}");
            2
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mmpool::pool::shared::Limits;
    use mmpool::Stats;

    #[test]
    fn json_escapes_and_lists_other_processes_only() {
        let s = SharedSnapshot {
            name: "a\"b".into(),
            path: "/dev/shm/mmpool.a\"b".into(),
            closed: false,
            stats: Stats { total_bytes: 10, in_use_bytes: 4, reserved_bytes: 5, ..Stats::default() },
            histograms: Default::default(),
            procs: crate::exposition::two_processes("cuda-context"),
            lock_recoveries: 0,
            reaped_procs: 2,
            limits: Limits { max_processes: 3, max_leases: 40, max_waiters: 5, max_handoffs: 6 },
            lock_holder: None,
            handoffs: Vec::new(),
        };
        let j = json(&s);
        assert!(j.starts_with("{\"name\":\"a\\\"b\""), "{j}");
        assert!(
            j.contains("\"processes\":[{\"pid\":7,\"leases\":1,\"bytes_held\":4,\"waiting\":0,\"reservations\":[{\"label\":\"cuda-context\",\"bytes\":5}]}]"),
            "{j}"
        );
        assert!(j.contains("\"reserved_bytes\":5"), "{j}");
        assert!(text(&s).contains("reserved    5 bytes outside leases; budget plus reservations 15 bytes"), "{}", text(&s));
        assert!(text(&s).contains("reserved \"cuda-context\": 5 bytes"), "{}", text(&s));
        assert!(j.contains("\"total_bytes\":10,\"in_use_bytes\":4"), "{j}");
        assert!(text(&s).contains("processes attached: 1"));
        assert!(j.contains("\"max_processes\":3,\"max_leases\":40,\"max_waiters\":5"), "{j}");
        assert!(j.contains("\"lock_holder\":null"), "{j}");
        assert!(text(&s).contains("limits      3 processes, 40 leases and tickets, 5 waiters, 6 hand-offs"), "{}", text(&s));
    }

    #[test]
    fn a_holder_that_keeps_the_lock_is_shown_with_its_pid_and_time() {
        let holder = LockHolder { slot: 4, pid: 4242, alive: true, held_for: std::time::Duration::from_millis(2500) };
        assert_eq!(lock_text(Some(&holder)), "held by pid 4242 (slot 4, alive) for 2.5 s; figures read without the lock");
        assert_eq!(lock_json(Some(&holder)), "{\"pid\":4242,\"slot\":4,\"alive\":true,\"held_ns\":2500000000}");
    }
}
