//! A server `compare` or `cluster` starts (a Switchboard node, the Node reference, a broker): spawned with
//! its output in a log file, ready when it prints its listening line on stdout or stderr (not after a
//! sleep), killed when dropped.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::ServerError;

/// How to run one server.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    /// Name in reports (`switchboard`, `node`).
    pub name: &'static str,
    /// The executable.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Text of the stdout or stderr line that says it listens.
    pub ready_line: &'static str,
}

/// A running server; dropping it kills it.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
}

impl ServerProcess {
    /// Starts the server and waits (at most `timeout`) for its ready line; stdout and stderr go to `log`.
    pub fn start(spec: &ServerSpec, log: &Path, timeout: Duration) -> Result<Self, ServerError> {
        let spawn_error = |source| ServerError::Spawn { name: spec.name, source };
        let log_file = File::create(log).map_err(spawn_error)?;
        let mut child = Command::new(&spec.program)
            .args(&spec.args)
            .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_error)?;
        let (ready_tx, ready_rx) = mpsc::channel();
        let stdout = child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>);
        let stderr = child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>);
        for stream in [stdout, stderr].into_iter().flatten() {
            let (ready_line, ready_tx) = (spec.ready_line, ready_tx.clone());
            let mut log = log_file.try_clone().map_err(spawn_error)?;
            // Copies the stream to the log for the server's whole life, so its pipe never fills up.
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = writeln!(log, "{line}");
                    if line.contains(ready_line) {
                        let _ = ready_tx.send(());
                    }
                }
            });
        }
        let mut server = Self { child };
        let deadline = Instant::now() + timeout;
        loop {
            if ready_rx.recv_timeout(Duration::from_millis(100)).is_ok() {
                return Ok(server);
            }
            let reason = match server.child.try_wait() {
                Ok(Some(status)) => format!("exited: {status}"),
                Err(e) => format!("cannot wait for it: {e}"),
                Ok(None) if Instant::now() >= deadline => {
                    format!("no {:?} line within {timeout:?}", spec.ready_line)
                }
                Ok(None) => continue,
            };
            server.kill();
            return Err(ServerError::NotReady {
                name: spec.name,
                reason,
                log: log.to_owned(),
                tail: tail(log, 20),
            });
        }
    }

    /// The server's pid, for `/proc`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last `lines` lines of a file.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell(script: &str) -> ServerSpec {
        ServerSpec {
            name: "test",
            program: "sh".into(),
            args: vec!["-c".into(), script.into()],
            env: vec![("GREETING".into(), "listening on http://x".into())],
            ready_line: "listening on",
        }
    }

    #[test]
    fn ready_when_the_line_appears_and_killed_on_drop() -> Result<(), ServerError> {
        let dir = std::env::temp_dir().join(format!("loadtest-server-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|source| ServerError::Spawn { name: "test", source })?;
        let log = dir.join("ok.log");
        let server = ServerProcess::start(
            &shell("echo starting; echo \"$GREETING\"; exec sleep 30"),
            &log,
            Duration::from_secs(5),
        )?;
        let pid = server.pid();
        assert!(Path::new(&format!("/proc/{pid}")).exists());
        drop(server);
        // A ready line on stderr counts too (nats-server logs there).
        drop(ServerProcess::start(
            &shell("echo \"$GREETING\" >&2; exec sleep 30"),
            &dir.join("stderr.log"),
            Duration::from_secs(5),
        )?);
        assert!(std::fs::read_to_string(&log).unwrap_or_default().contains("starting"));

        let failed = ServerProcess::start(
            &shell("echo boom >&2; exit 3"),
            &dir.join("fail.log"),
            Duration::from_secs(5),
        );
        match failed {
            Err(ServerError::NotReady { reason, tail, .. }) => {
                assert!(reason.contains("exited"), "{reason}");
                assert!(tail.contains("boom"), "{tail}");
            }
            other => panic!("expected NotReady, got {other:?}"),
        }
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}
