//! HTTP load from `wrk` (Debian's package), a separate process that drives a
//! bare axum endpoint far past what the servers under test can answer, so the
//! load generator is never the bottleneck. A Lua script cycles through
//! pre-made requests and prints a JSON summary that is parsed here.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

/// Cycles through the requests of a file (one per line: signature, a tab, the
/// body) and reports its figures as one JSON line when done.
const SCRIPT: &str = r#"
local requests = {}
local next_index = 1

function init(args)
  for line in io.lines(args[1]) do
    local signature, body = line:match("^([^\t]*)\t(.*)$")
    requests[#requests + 1] = wrk.format("POST", nil, {
      ["Content-Type"] = "application/json",
      ["X-Webhook-Signature"] = signature,
    }, body)
  end
end

function request()
  local r = requests[next_index]
  next_index = next_index % #requests + 1
  return r
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\n{"requests":%d,"duration_us":%d,"non_2xx":%d,"socket_errors":%d,' ..
    '"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.status,
    e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"#;

/// What one `wrk` run measured.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Load {
    pub requests: u64,
    duration_us: u64,
    /// Answers other than 2xx and 3xx.
    pub non_2xx: u64,
    pub socket_errors: u64,
    p50_us: u64,
    p99_us: u64,
}

impl Load {
    pub(crate) fn per_second(&self) -> f64 {
        self.requests as f64 / (self.duration_us as f64 / 1e6)
    }

    pub(crate) fn p50(&self) -> Duration {
        Duration::from_micros(self.p50_us)
    }

    pub(crate) fn p99(&self) -> Duration {
        Duration::from_micros(self.p99_us)
    }

    pub(crate) fn errors(&self) -> u64 {
        self.non_2xx + self.socket_errors
    }
}

/// Pre-made requests in a file, and the script that sends them.
pub(crate) struct Requests {
    dir: tempfile::TempDir,
}

impl Requests {
    /// Writes `(body, signature)` pairs; bodies must be single-line.
    pub(crate) fn new(requests: &[(String, String)]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut lines = String::new();
        for (body, signature) in requests {
            anyhow::ensure!(!body.contains('\n'), "request bodies must be one line");
            lines.push_str(signature);
            lines.push('\t');
            lines.push_str(body);
            lines.push('\n');
        }
        std::fs::write(dir.path().join("requests.tsv"), lines)?;
        std::fs::write(dir.path().join("requests.lua"), SCRIPT)?;
        Ok(Requests { dir })
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs `wrk` with one thread and `connections` connections for `duration`.
    pub(crate) fn drive(
        &self,
        url: &str,
        connections: usize,
        duration: Duration,
    ) -> anyhow::Result<Load> {
        drive(
            url,
            connections,
            duration,
            &self.file("requests.lua"),
            &self.file("requests.tsv"),
        )
    }
}

fn drive(
    url: &str,
    connections: usize,
    duration: Duration,
    script: &Path,
    requests: &Path,
) -> anyhow::Result<Load> {
    let output = Command::new("wrk")
        .args(["--threads", "1", "--connections"])
        .arg(connections.to_string())
        .arg("--duration")
        .arg(format!("{}s", duration.as_secs().max(1)))
        .arg("--timeout")
        .arg("10s")
        .arg("--script")
        .arg(script)
        .arg(url)
        .arg("--")
        .arg(requests)
        .output()
        .context("running wrk (Debian package `wrk`; scripts/bench installs it)")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "wrk failed: {}{}",
        stdout,
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = stdout
        .lines()
        .rev()
        .find(|line| line.starts_with('{'))
        .with_context(|| format!("wrk printed no summary: {stdout}"))?;
    Ok(serde_json::from_str(summary)?)
}
