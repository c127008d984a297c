//! A small command-line reader shared by the subcommands.
//!
//! Every flag that takes a value takes it as `--flag value` or `--flag=value`.
//! A value out of its range is a usage error that names the flag, the value
//! and the range.

use std::fmt::Display;
use std::ops::RangeInclusive;
use std::str::FromStr;

/// Walks `--flag value` and `--flag=value` arguments.
pub struct Args<'a> {
    rest: std::slice::Iter<'a, String>,
    /// The last flag's `=value`: the whole word, and the value, until
    /// [`Args::value`] takes it.
    inline: Option<(String, String)>,
}

impl<'a> Args<'a> {
    pub fn new(args: &'a [String]) -> Self {
        Args { rest: args.iter(), inline: None }
    }

    /// The next argument (a flag, or a positional word). `--flag=value` comes
    /// back as `--flag`, its value kept for [`Args::value`]. When the flag
    /// before took no value but was given one, this returns that whole word
    /// (`--quick=yes`), which matches no flag; [`unknown`] names the mistake.
    pub fn next_flag(&mut self) -> Option<String> {
        if let Some((word, _)) = self.inline.take() {
            return Some(word);
        }
        let word = self.rest.next()?;
        match word.strip_prefix("--").and_then(|w| w.split_once('=')) {
            Some((name, value)) => {
                self.inline = Some((word.clone(), value.to_string()));
                Some(format!("--{name}"))
            }
            None => Some(word.clone()),
        }
    }

    /// The value of `flag`: after its `=`, or the next argument.
    pub fn value(&mut self, flag: &str) -> Result<String, String> {
        if let Some((_, value)) = self.inline.take() {
            return Ok(value);
        }
        self.rest.next().cloned().ok_or_else(|| format!("{flag} needs a value"))
    }

    /// The value of `flag`, a number within `range` (NaN is in no range).
    pub fn number_in<T: FromStr + PartialOrd + Display>(
        &mut self,
        flag: &str,
        range: RangeInclusive<T>,
    ) -> Result<T, String> {
        let v = self.value(flag)?;
        let out_of_range = || format!("{flag} must be from {} to {}, got `{v}`", range.start(), range.end());
        match v.parse::<T>() {
            Ok(n) if range.contains(&n) => Ok(n),
            _ => Err(out_of_range()),
        }
    }
}

/// The message for an argument no flag of the command matched.
pub fn unknown(word: &str) -> String {
    match word.strip_prefix("--").and_then(|w| w.split_once('=')) {
        // `next_flag` splits every `--flag=value`, and hands the whole word
        // back only when the flag was known and took no value.
        Some((name, _)) => format!("--{name} takes no value, got `{word}`"),
        None => format!("unknown option `{word}`"),
    }
}

/// A command's parsed flags: `Ok(config)` to run, or the exit code once
/// `help` (0, for `--help`: `parsed` is `Ok(None)`) or the usage error and
/// `help` (2) are printed.
pub fn settle<T>(command: &str, help: &str, parsed: Result<Option<T>, String>) -> Result<T, i32> {
    match parsed {
        Ok(Some(config)) => Ok(config),
        Ok(None) => {
            println!("{help}");
            Err(0)
        }
        Err(e) => {
            eprintln!("mmpool {command}: {e}\n{help}");
            Err(2)
        }
    }
}

/// Parses `1073741824`, `1GiB`, `512MiB`, `64KiB`, `2TiB` (also `G`, `M`, `K`, `T`).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        "t" | "tib" => 40,
        _ => return Err(format!("`{text}` is not a size (use e.g. 1GiB, 512MiB or bytes)")),
    };
    let n: f64 = num.parse().map_err(|_| format!("`{text}` is not a size"))?;
    let bytes = n * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(format!("`{text}` is out of range"));
    }
    Ok(bytes as u64)
}

/// `n` and the noun, plural unless `n` is 1: "1 worker", "8 workers".
pub fn count(n: u64, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::{count, parse_bytes, unknown, Args};

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn sizes_parse_in_binary_units() {
        assert_eq!(parse_bytes("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("1.5g").unwrap(), 3 << 29);
        assert_eq!(parse_bytes("4096").unwrap(), 4096);
        assert!(parse_bytes("12 parsecs").is_err());
        assert!(parse_bytes("").is_err());
    }

    #[test]
    fn a_value_comes_after_a_space_or_an_equals_sign() {
        let w = words("--a 1 --b=2 --c= pos --d=x=y");
        let mut a = Args::new(&w);
        assert_eq!(a.next_flag().as_deref(), Some("--a"));
        assert_eq!(a.value("--a").unwrap(), "1");
        assert_eq!(a.next_flag().as_deref(), Some("--b"));
        assert_eq!(a.value("--b").unwrap(), "2");
        assert_eq!(a.next_flag().as_deref(), Some("--c"));
        assert_eq!(a.value("--c").unwrap(), "", "`--c=` is an empty value, not the next word");
        assert_eq!(a.next_flag().as_deref(), Some("pos"));
        assert_eq!(a.next_flag().as_deref(), Some("--d"));
        assert_eq!(a.value("--d").unwrap(), "x=y");
        assert_eq!(a.next_flag(), None);
        assert_eq!(a.value("--e").unwrap_err(), "--e needs a value");
    }

    #[test]
    fn a_switch_given_a_value_comes_back_whole_and_is_named() {
        let w = words("--quick=yes --more");
        let mut a = Args::new(&w);
        assert_eq!(a.next_flag().as_deref(), Some("--quick"));
        // The caller treats --quick as a switch and asks for the next flag.
        let back = a.next_flag().unwrap();
        assert_eq!(back, "--quick=yes");
        assert_eq!(unknown(&back), "--quick takes no value, got `--quick=yes`");
        assert_eq!(a.next_flag().as_deref(), Some("--more"));
        assert_eq!(unknown("--frob"), "unknown option `--frob`");
    }

    #[test]
    fn numbers_out_of_range_name_the_flag_the_value_and_the_range() {
        let w = words("--n 0 --n 5 --x nan --x inf --x -1 --x 0.5 --n abc");
        let mut a = Args::new(&w);
        let next = |a: &mut Args, range| {
            let flag = a.next_flag().unwrap();
            a.number_in::<u32>(&flag, range)
        };
        assert_eq!(next(&mut a, 1..=4).unwrap_err(), "--n must be from 1 to 4, got `0`");
        assert_eq!(next(&mut a, 1..=5).unwrap(), 5);
        for bad in ["nan", "inf", "-1"] {
            let flag = a.next_flag().unwrap();
            let err = a.number_in(&flag, 0.0..=1.0).unwrap_err();
            assert_eq!(err, format!("--x must be from 0 to 1, got `{bad}`"));
        }
        let flag = a.next_flag().unwrap();
        assert_eq!(a.number_in(&flag, 0.0..=1.0).unwrap(), 0.5);
        assert_eq!(next(&mut a, 1..=4).unwrap_err(), "--n must be from 1 to 4, got `abc`");
    }

    #[test]
    fn counts_agree_with_their_number() {
        assert_eq!(count(1, "worker"), "1 worker");
        assert_eq!(count(0, "worker"), "0 workers");
        assert_eq!(count(8, "worker"), "8 workers");
    }
}
