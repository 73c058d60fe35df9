//! Typed parsing of config values: durations ("250ms", "10m", "1h30m"), sizes
//! ("256MiB", "64KiB", "1024"), and the key-path-aware reader that turns a TOML table
//! into typed settings while collecting every problem instead of stopping at the first.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

/// One problem in the configuration, named by its key path (`origin.timeout`,
/// `routes[2].ttl`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Problems as one line each, `key.path: message`, joined.
pub fn report(errors: &[ConfigError]) -> String {
    let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    lines.join("; ")
}

/// The units a duration may carry, as Go's `time.ParseDuration` and Envoy users
/// write them (plus `d`), with their length in nanoseconds.
const DURATION_UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("\u{b5}s", 1_000),  // µ, MICRO SIGN
    ("\u{3bc}s", 1_000), // μ, GREEK SMALL LETTER MU
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60 * 1_000_000_000),
    ("h", 3_600 * 1_000_000_000),
    ("d", 86_400 * 1_000_000_000),
];

const UNIT_NAMES: &str = "ns, us (or \u{b5}s), ms, s, m, h or d";

/// Parses a duration as Go's `time.ParseDuration` does, plus days: one or more
/// numbers, each with a unit (`250ms`, `30s`, `1.5s`, `0.5m`, `1h30m`, `100us`,
/// `2d`), or a bare `0`. Decimals are exact to the nanosecond; signs, spaces
/// inside and a number without a unit are refused.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration; expected e.g. \"250ms\", \"30s\", \"1.5s\", \"1h30m\"".into());
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.starts_with(['-', '+']) {
        return Err(format!(
            "invalid duration {text:?}: a duration has no sign (and is never negative)"
        ));
    }
    let too_large = || format!("duration {text:?} is too large");
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let whole_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let whole = &rest[..whole_len];
        rest = &rest[whole_len..];
        let mut fraction = "";
        if let Some(after_dot) = rest.strip_prefix('.') {
            let len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
            fraction = &after_dot[..len];
            rest = &after_dot[len..];
            if whole.is_empty() && fraction.is_empty() {
                return Err(format!("invalid duration {text:?}: \".\" is not a number"));
            }
        } else if whole.is_empty() {
            return Err(format!(
                "invalid duration {text:?}; expected numbers with units, e.g. \"1h30m\" or \"1.5s\" (units: {UNIT_NAMES})"
            ));
        }
        let unit_len: usize = rest
            .char_indices()
            .take_while(|(_, c)| c.is_alphabetic())
            .map(|(_, c)| c.len_utf8())
            .sum();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let per: u128 = match DURATION_UNITS.iter().find(|(u, _)| *u == unit) {
            Some((_, per)) => *per,
            None if unit.is_empty() => {
                let n = if fraction.is_empty() {
                    whole.to_string()
                } else {
                    format!("{whole}.{fraction}")
                };
                return Err(format!(
                    "duration {text:?} has no unit after {n}; write e.g. \"{n}s\" or \"{n}ms\""
                ));
            }
            None => {
                return Err(format!(
                    "duration {text:?} has unknown unit {unit:?}; use {UNIT_NAMES}"
                ))
            }
        };
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| too_large())?
        };
        // Digits beyond the 18th cannot matter at nanosecond precision for any unit
        // up to a day (10^14 ns): dropping them keeps the arithmetic in range.
        let fraction = &fraction[..fraction.len().min(18)];
        let part = if fraction.is_empty() {
            0
        } else {
            let f: u128 = fraction.parse().expect("ascii digits");
            f * per / 10u128.pow(fraction.len() as u32)
        };
        total = whole
            .checked_mul(per)
            .and_then(|w| w.checked_add(part))
            .and_then(|n| total.checked_add(n))
            .ok_or_else(too_large)?;
    }
    let nanos = u64::try_from(total).map_err(|_| too_large())?;
    Ok(Duration::from_nanos(nanos))
}

/// Parses "256MiB", "8MiB", "64KiB", "1GiB", "100kB", "512B" or a plain byte count.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let s = text.trim();
    let digits = s.bytes().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return Err(format!(
            "invalid size {text:?}; expected e.g. \"256MiB\", \"64KiB\" or a byte count"
        ));
    }
    let n: u64 = s[..digits]
        .parse()
        .map_err(|_| format!("size {text:?} is too large"))?;
    let mult: u64 = match s[digits..].trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "size {text:?} has unknown unit {other:?}; use B, KiB, MiB, GiB, kB, MB or GB"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

/// Formats a byte count the way the config file writes it.
pub fn format_size(n: u64) -> String {
    if n != 0 && n.is_multiple_of(1 << 30) {
        format!("{}GiB", n >> 30)
    } else if n != 0 && n.is_multiple_of(1 << 20) {
        format!("{}MiB", n >> 20)
    } else if n != 0 && n.is_multiple_of(1 << 10) {
        format!("{}KiB", n >> 10)
    } else {
        format!("{n}B")
    }
}

/// Reads one TOML table key by key. Every `take_*` removes the key, so whatever is
/// left at `finish` is unknown and reported; every failed parse is recorded with its
/// key path and answered with the default so reading goes on and all problems show.
pub struct Section<'e> {
    path: String,
    table: toml::Table,
    errors: &'e mut Vec<ConfigError>,
    known: &'e mut BTreeSet<String>,
    known_prefix: String,
}

impl<'e> Section<'e> {
    pub fn new(
        path: impl Into<String>,
        known_prefix: impl Into<String>,
        table: toml::Table,
        errors: &'e mut Vec<ConfigError>,
        known: &'e mut BTreeSet<String>,
    ) -> Self {
        Section {
            path: path.into(),
            table,
            errors,
            known,
            known_prefix: known_prefix.into(),
        }
    }

    pub fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    pub fn error(&mut self, key: &str, message: impl Into<String>) {
        let key = self.key_path(key);
        self.errors.push(ConfigError {
            key,
            message: message.into(),
        });
    }

    fn raw(&mut self, key: &str) -> Option<toml::Value> {
        let known = if self.known_prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.known_prefix)
        };
        self.known.insert(known);
        self.table.remove(key)
    }

    fn parse<T>(
        &mut self,
        key: &str,
        default: T,
        f: impl FnOnce(&toml::Value) -> Result<T, String>,
    ) -> T {
        match self.raw(key) {
            None => default,
            Some(v) => match f(&v) {
                Ok(t) => t,
                Err(msg) => {
                    self.error(key, msg);
                    default
                }
            },
        }
    }

    pub fn string(&mut self, key: &str, default: &str) -> String {
        self.parse(key, default.to_string(), as_string)
    }

    /// An optional string; an empty string counts as unset.
    pub fn opt_string(&mut self, key: &str) -> Option<String> {
        self.parse(key, None, |v| {
            as_string(v).map(|s| if s.is_empty() { None } else { Some(s) })
        })
    }

    /// One of a fixed set of words (`backend = "redis"`), as its typed value; a
    /// word outside the set is an error naming the choices. None when absent.
    pub fn opt_choice<T: Clone>(&mut self, key: &str, choices: &[(&str, T)]) -> Option<T> {
        let word = self.opt_string(key)?;
        match choices.iter().find(|(w, _)| *w == word) {
            Some((_, v)) => Some(v.clone()),
            None => {
                let names: Vec<String> = choices.iter().map(|(w, _)| format!("{w:?}")).collect();
                self.error(
                    key,
                    format!("expected one of {}, got {word:?}", names.join(", ")),
                );
                None
            }
        }
    }

    /// Like `opt_choice`, with the value used when the key is absent or wrong.
    pub fn choice<T: Clone>(&mut self, key: &str, default: T, choices: &[(&str, T)]) -> T {
        self.opt_choice(key, choices).unwrap_or(default)
    }

    pub fn bool(&mut self, key: &str, default: bool) -> bool {
        self.parse(key, default, |v| match v {
            toml::Value::Boolean(b) => Ok(*b),
            toml::Value::String(s) => match s.trim() {
                "true" | "1" | "yes" => Ok(true),
                "false" | "0" | "no" => Ok(false),
                _ => Err(format!("expected true or false, got {s:?}")),
            },
            other => Err(format!("expected true or false, got {}", other.type_str())),
        })
    }

    pub fn u64(&mut self, key: &str, default: u64) -> u64 {
        self.parse(key, default, |v| match v {
            toml::Value::Integer(i) if *i >= 0 => Ok(*i as u64),
            toml::Value::Integer(i) => Err(format!("expected a non-negative number, got {i}")),
            toml::Value::String(s) => s
                .trim()
                .parse()
                .map_err(|_| format!("expected a non-negative number, got {s:?}")),
            other => Err(format!("expected a number, got {}", other.type_str())),
        })
    }

    /// A number (`0.1`, `1`, or from the environment `"0.1"`).
    pub fn f64(&mut self, key: &str, default: f64) -> f64 {
        self.parse(key, default, |v| match v {
            toml::Value::Float(f) => Ok(*f),
            toml::Value::Integer(i) => Ok(*i as f64),
            toml::Value::String(s) => s
                .trim()
                .parse()
                .map_err(|_| format!("expected a number such as 0.1, got {s:?}")),
            other => Err(format!("expected a number, got {}", other.type_str())),
        })
    }

    pub fn opt_f64(&mut self, key: &str) -> Option<f64> {
        self.parse(key, None, |v| match v {
            toml::Value::Float(f) => Ok(Some(*f)),
            toml::Value::Integer(i) => Ok(Some(*i as f64)),
            toml::Value::String(s) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| format!("expected a number such as 0.1, got {s:?}")),
            other => Err(format!("expected a number, got {}", other.type_str())),
        })
    }

    pub fn duration(&mut self, key: &str, default: Duration) -> Duration {
        self.parse(key, default, as_duration)
    }

    pub fn opt_duration(&mut self, key: &str) -> Option<Duration> {
        self.parse(key, None, |v| as_duration(v).map(Some))
    }

    pub fn size(&mut self, key: &str, default: u64) -> u64 {
        self.parse(key, default, |v| match v {
            toml::Value::String(s) => parse_size(s),
            toml::Value::Integer(i) if *i >= 0 => Ok(*i as u64),
            other => Err(format!(
                "expected a size such as \"64KiB\", got {}",
                other.type_str()
            )),
        })
    }

    /// An optional size; None when absent.
    pub fn opt_size(&mut self, key: &str) -> Option<u64> {
        self.parse(key, None, |v| match v {
            toml::Value::String(s) => parse_size(s).map(Some),
            toml::Value::Integer(i) if *i >= 0 => Ok(Some(*i as u64)),
            other => Err(format!(
                "expected a size such as \"64KiB\", got {}",
                other.type_str()
            )),
        })
    }

    pub fn addr(&mut self, key: &str, default: &str) -> SocketAddr {
        let fallback: SocketAddr = default.parse().expect("default address parses");
        self.parse(key, fallback, |v| {
            let s = as_string(v)?;
            s.parse::<SocketAddr>()
                .map_err(|_| format!("expected an address such as \"0.0.0.0:8080\", got {s:?}"))
        })
    }

    /// A list of strings: a TOML array, or (from the environment) a comma-separated string.
    pub fn strings(&mut self, key: &str, default: &[&str]) -> Vec<String> {
        let default: Vec<String> = default.iter().map(|s| s.to_string()).collect();
        self.parse(key, default, as_strings)
    }

    /// A table of string to string (`claims_to_headers = { sub = "x-user-id" }`).
    pub fn string_map(&mut self, key: &str) -> Vec<(String, String)> {
        self.parse(key, Vec::new(), |v| match v {
            toml::Value::Table(t) => t
                .iter()
                .map(|(k, v)| match v {
                    toml::Value::String(s) => Ok((k.clone(), s.clone())),
                    other => Err(format!(
                        "value of {k:?} must be a string, got {}",
                        other.type_str()
                    )),
                })
                .collect(),
            toml::Value::String(s) => s
                .split(',')
                .filter(|p| !p.trim().is_empty())
                .map(|pair| {
                    pair.split_once('=')
                        .map(|(a, b)| (a.trim().to_string(), b.trim().to_string()))
                        .ok_or_else(|| format!("expected name=value pairs, got {pair:?}"))
                })
                .collect(),
            other => Err(format!("expected a table, got {}", other.type_str())),
        })
    }

    /// A nested table as its own section (`server.tls`), or None when absent.
    pub fn table(&mut self, key: &str) -> Option<toml::Table> {
        self.parse(key, None, |v| match v {
            toml::Value::Table(t) => Ok(Some(t.clone())),
            other => Err(format!("expected a table, got {}", other.type_str())),
        })
    }

    /// A nested section read with the same error list (keys named `path.key.sub`).
    pub fn sub<T>(&mut self, key: &str, read: impl FnOnce(&mut Section<'_>) -> T) -> T {
        let table = self.table(key).unwrap_or_default();
        let path = self.key_path(key);
        let known_prefix = if self.known_prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.known_prefix)
        };
        let mut s = Section::new(path, known_prefix, table, self.errors, self.known);
        let out = read(&mut s);
        s.finish();
        out
    }

    /// Like `sub`, but None when the table is absent.
    pub fn sub_opt<T>(&mut self, key: &str, read: impl FnOnce(&mut Section<'_>) -> T) -> Option<T> {
        let present = self.table.contains_key(key);
        let out = self.sub(key, read);
        present.then_some(out)
    }

    /// Reports every key that nobody asked for.
    pub fn finish(self) {
        for key in self.table.keys() {
            let path = if self.path.is_empty() {
                key.clone()
            } else {
                format!("{}.{key}", self.path)
            };
            self.errors.push(ConfigError {
                key: path,
                message: "unknown key".into(),
            });
        }
    }
}

/// A config duration: what `parse_duration` reads, 0 or at least 1ms (TTLs and
/// timeouts reach the store in whole milliseconds, where less would become 0).
pub fn as_duration(v: &toml::Value) -> Result<Duration, String> {
    let toml::Value::String(s) = v else {
        return Err(format!(
            "expected a duration string such as \"30s\", got {}",
            v.type_str()
        ));
    };
    let d = parse_duration(s)?;
    if !d.is_zero() && d < Duration::from_millis(1) {
        return Err(format!(
            "{s:?} is under 1ms; gatehouse keeps time in whole milliseconds: use 0 or at least \"1ms\""
        ));
    }
    Ok(d)
}

pub fn as_string(v: &toml::Value) -> Result<String, String> {
    match v {
        toml::Value::String(s) => Ok(s.clone()),
        other => Err(format!("expected a string, got {}", other.type_str())),
    }
}

pub fn as_strings(v: &toml::Value) -> Result<Vec<String>, String> {
    match v {
        toml::Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| as_string(item).map_err(|e| format!("item {i}: {e}")))
            .collect(),
        toml::Value::String(s) => Ok(s
            .split(',')
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect()),
        other => Err(format!(
            "expected a list of strings, got {}",
            other.type_str()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_combinations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("10").unwrap_err().contains("no unit"));
        assert!(parse_duration("10x").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("abc").is_err());
    }

    #[test]
    fn durations_take_decimals_exact_to_the_nanosecond() {
        let ms = Duration::from_millis;
        assert_eq!(parse_duration("1.5s").unwrap(), ms(1500));
        assert_eq!(parse_duration("0.5m").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1.25h").unwrap(), Duration::from_secs(4500));
        assert_eq!(
            parse_duration("2.5ms").unwrap(),
            Duration::from_micros(2500)
        );
        assert_eq!(parse_duration(".5s").unwrap(), ms(500));
        assert_eq!(parse_duration("1.s").unwrap(), Duration::from_secs(1));
        assert_eq!(
            parse_duration("0.1s").unwrap(),
            ms(100),
            "no float rounding"
        );
        assert_eq!(
            parse_duration("0.3s").unwrap(),
            ms(300),
            "no float rounding"
        );
        assert_eq!(parse_duration("0.5d").unwrap(), Duration::from_secs(43_200));
        assert_eq!(
            parse_duration("1.000000000000000000000001s").unwrap(),
            Duration::from_secs(1),
            "digits past nanoseconds are dropped"
        );
        assert!(parse_duration(".s").unwrap_err().contains("not a number"));
        assert!(parse_duration("1.5")
            .unwrap_err()
            .contains("no unit after 1.5"));
    }

    #[test]
    fn durations_take_go_and_envoy_units() {
        assert_eq!(parse_duration("300ns").unwrap(), Duration::from_nanos(300));
        assert_eq!(parse_duration("100us").unwrap(), Duration::from_micros(100));
        assert_eq!(
            parse_duration("100\u{b5}s").unwrap(),
            Duration::from_micros(100)
        );
        assert_eq!(
            parse_duration("100\u{3bc}s").unwrap(),
            Duration::from_micros(100)
        );
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        // Compound, in any order, as Go reads them.
        assert_eq!(
            parse_duration("1h30m15.5s").unwrap(),
            Duration::from_millis(5_415_500)
        );
        assert_eq!(parse_duration("1m1h").unwrap(), Duration::from_secs(3660));
        assert_eq!(
            parse_duration("1s500ms").unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(parse_duration(" 30s ").unwrap(), Duration::from_secs(30));
        for bad in [
            "-1s", "+1s", "1 s", "1h 30m", "1sec", "1S", "1H", "s", "1.2.3s", "1e3s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(parse_duration("-1s").unwrap_err().contains("sign"));
        assert!(parse_duration("5sec").unwrap_err().contains("\"sec\""));
        assert!(parse_duration("5sec").unwrap_err().contains("ns, us"));
        assert!(parse_duration("1000000000000d")
            .unwrap_err()
            .contains("too large"));
        assert!(parse_duration("99999999999999999999999999999999999999999s")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn a_bad_duration_is_an_error_naming_its_key() {
        let mut errors = Vec::new();
        let mut known = BTreeSet::new();
        let table: toml::Table =
            "a = \"1.5x\"\nb = \"500us\"\nc = 5\nd = \"1.5s\"\ne = \"0.5m\"\nf = \"0\""
                .parse()
                .unwrap();
        let mut s = Section::new("origin", "origin", table, &mut errors, &mut known);
        let fallback = Duration::from_secs(7);
        assert_eq!(s.duration("a", fallback), fallback);
        assert_eq!(s.duration("b", fallback), fallback);
        assert_eq!(s.opt_duration("c"), None);
        assert_eq!(s.duration("d", fallback), Duration::from_millis(1500));
        assert_eq!(s.opt_duration("e"), Some(Duration::from_secs(30)));
        assert_eq!(s.duration("f", fallback), Duration::ZERO);
        s.finish();
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["origin.a", "origin.b", "origin.c"], "{errors:?}");
        assert!(
            errors[0].to_string().starts_with("origin.a: "),
            "{}",
            errors[0]
        );
        assert!(
            errors[0].message.contains("unknown unit \"x\""),
            "{}",
            errors[0]
        );
        assert!(errors[1].message.contains("under 1ms"), "{}", errors[1]);
        assert!(
            errors[2].message.contains("duration string"),
            "{}",
            errors[2]
        );
    }

    #[test]
    fn sizes_parse_binary_and_decimal_units() {
        assert_eq!(parse_size("256MiB").unwrap(), 256 << 20);
        assert_eq!(parse_size("64KiB").unwrap(), 64 << 10);
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("1kB").unwrap(), 1000);
        assert!(parse_size("12 parsecs").is_err());
        assert_eq!(format_size(8 << 20), "8MiB");
    }
}
