//! The outstanding hand-offs of a shared pool in `mmpool status`: token id,
//! producer pid, age, bytes held, parts left and the pids of the processes
//! holding claimed parts.

use mmpool::pool::shared::SharedHandoff;

fn pids(claimants: &[u32]) -> String {
    if claimants.is_empty() {
        return "-".into();
    }
    claimants.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

/// The text table (a heading line, then one row a hand-off).
pub fn text(handoffs: &[SharedHandoff]) -> String {
    let mut out = format!("hand-offs outstanding: {}\n", handoffs.len());
    if handoffs.is_empty() {
        return out;
    }
    out += &format!(
        "  {:>18}  {:>8}  {:>9}  {:>20}  {:>10}  {}\n",
        "TOKEN", "PRODUCER", "AGE", "BYTES", "PARTS LEFT", "CLAIMANTS"
    );
    for h in handoffs {
        let i = &h.info;
        out += &format!(
            "  {:>#18x}  {:>8}  {:>8.1}s  {:>20}  {:>4} of {:<3}  {}\n",
            i.token.id,
            h.producer_pid,
            i.age.as_secs_f64(),
            i.nbytes,
            i.parts_left,
            i.token.parts,
            pids(&h.claimants)
        );
    }
    out
}

/// The JSON array of `mmpool status --json`.
pub fn json(handoffs: &[SharedHandoff]) -> String {
    let rows: Vec<String> = handoffs
        .iter()
        .map(|h| {
            let i = &h.info;
            format!(
                "{{\"token_id\":{},\"producer_pid\":{},\"age_ns\":{},\"bytes\":{},\"parts\":{},\"parts_left\":{},\
                 \"claimants\":[{}]}}",
                i.token.id,
                h.producer_pid,
                i.age.as_nanos(),
                i.nbytes,
                i.token.parts,
                i.parts_left,
                h.claimants.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
            )
        })
        .collect();
    format!("[{}]", rows.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mmpool::pool::{HandoffInfo, Token};
    use std::time::Duration;

    #[test]
    fn rows_name_the_token_the_producer_and_the_claimants() {
        let token = Token { id: 0x10003, nonce: 9, parts: 4, flags: 0, offset: 0 };
        let info = HandoffInfo { token, nbytes: 4096, parts_left: 3, claimed: 2, age: Duration::from_millis(1500) };
        let h = [SharedHandoff { info, producer_pid: 77, claimants: vec![81, 82] }];
        let t = text(&h);
        assert!(t.starts_with("hand-offs outstanding: 1\n"), "{t}");
        assert!(t.contains("0x10003") && t.contains(" 77 ") && t.contains("1.5s") && t.contains("3 of 4"), "{t}");
        assert!(t.trim_end().ends_with("81,82"), "{t}");
        assert_eq!(
            json(&h),
            "[{\"token_id\":65539,\"producer_pid\":77,\"age_ns\":1500000000,\"bytes\":4096,\"parts\":4,\
             \"parts_left\":3,\"claimants\":[81,82]}]"
        );
        assert_eq!(text(&[]), "hand-offs outstanding: 0\n");
    }
}
