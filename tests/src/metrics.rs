//! Reading a Prometheus text exposition (format 0.0.4) the way the suites need it:
//! look up a sample by name and labels.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

/// One sample line: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed scrape; `text` keeps the original for promtool and for failure messages.
#[derive(Debug, Clone)]
pub struct Scrape {
    pub text: String,
    pub samples: Vec<Sample>,
}

impl Scrape {
    /// Parses the exposition; panics on a malformed sample line (that is a daemon bug).
    pub fn parse(text: &str) -> Scrape {
        let samples = text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| parse_sample(l).unwrap_or_else(|e| panic!("bad sample line {l:?}: {e}")))
            .collect();
        Scrape {
            text: text.to_string(),
            samples,
        }
    }

    /// Samples called `name` whose labels include every pair in `labels`.
    pub fn find<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).is_some_and(|have| have == v))
        })
    }

    /// The value of the one sample called `name` matching `labels`; `None` if there is
    /// none; panics if several match (the labels given were not specific enough).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found: Vec<&Sample> = self.find(name, labels).collect();
        match found.as_slice() {
            [] => None,
            [one] => Some(one.value),
            many => panic!(
                "{} samples of {name} match {labels:?}: {many:?}",
                many.len()
            ),
        }
    }

    /// `siteward_check_up` of a check: `Some(true)` up, `Some(false)` down, `None` unknown.
    pub fn check_up(&self, check: &str) -> Option<bool> {
        self.get("siteward_check_up", &[("check", check)])
            .map(|v| v == 1.0)
    }

    /// `siteward_check_runs_total` of a check for one result; 0 when the series is absent
    /// (the daemon only exports results that happened).
    pub fn runs(&self, check: &str, result: &str) -> u64 {
        self.get(
            "siteward_check_runs_total",
            &[("check", check), ("result", result)],
        )
        .unwrap_or(0.0) as u64
    }

    /// All runs of a check, whatever their result.
    pub fn runs_all(&self, check: &str) -> u64 {
        self.find("siteward_check_runs_total", &[("check", check)])
            .map(|s| s.value as u64)
            .sum()
    }
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(['{', ' '])
        .ok_or("no value after the metric name")?;
    let name = line[..name_end].to_string();
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(mut inside) = rest.strip_prefix('{') {
        loop {
            inside = inside.trim_start_matches(',');
            if let Some(after) = inside.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, after_eq) = inside.split_once('=').ok_or("label without =")?;
            let quoted = after_eq
                .strip_prefix('"')
                .ok_or_else(|| format!("label {key} value is not quoted"))?;
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let close = loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c)) => value.push(c),
                        None => return Err("dangling escape".into()),
                    },
                    Some((i, '"')) => break i,
                    Some((_, c)) => value.push(c),
                    None => return Err("unterminated label value".into()),
                }
            };
            labels.insert(key.to_string(), value);
            inside = &quoted[close + 1..];
        }
    }
    let value_text = rest.split_whitespace().next().ok_or("no value")?;
    let value = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse::<f64>().map_err(|e| format!("value {v:?}: {e}"))?,
    };
    Ok(Sample {
        name,
        labels,
        value,
    })
}

/// Runs `promtool check metrics` on `text`: whether it passed, and what it said.
pub fn promtool_check(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running promtool (apt install prometheus)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_labels_with_escapes_and_special_values() {
        let scrape = Scrape::parse(
            "# HELP x y\n# TYPE x gauge\nx{a=\"q\\\"b\\\\s\\nn\",le=\"+Inf\"} 1.5\nplain 3\nh_bucket{le=\"+Inf\"} +Inf\n",
        );
        assert_eq!(scrape.samples.len(), 3);
        assert_eq!(scrape.samples[0].labels["a"], "q\"b\\s\nn");
        assert_eq!(scrape.get("x", &[("le", "+Inf")]), Some(1.5));
        assert_eq!(scrape.get("plain", &[]), Some(3.0));
        assert_eq!(scrape.get("h_bucket", &[]), Some(f64::INFINITY));
        assert_eq!(scrape.get("missing", &[]), None);
    }

    #[test]
    fn runs_default_to_zero_and_sum() {
        let scrape = Scrape::parse(
            "siteward_check_runs_total{check=\"a\",kind=\"tcp\",result=\"ok\"} 4\nsiteward_check_runs_total{check=\"a\",kind=\"tcp\",result=\"refused\"} 2\nsiteward_check_up{check=\"a\",kind=\"tcp\"} 0\n",
        );
        assert_eq!(scrape.runs("a", "ok"), 4);
        assert_eq!(scrape.runs("a", "timeout"), 0);
        assert_eq!(scrape.runs_all("a"), 6);
        assert_eq!(scrape.check_up("a"), Some(false));
        assert_eq!(scrape.check_up("b"), None);
    }
}
