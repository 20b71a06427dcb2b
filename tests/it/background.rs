//! The plugin run in the background while a test acts on the plane (a watch, a long strip),
//! in the environment `run_hermetic` gives it.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::common::*;

/// The plugin running in the background, its output collected as it goes (a full pipe would
/// stall it).
pub struct Running {
    pub child: Child,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
    pub what: String,
    pub started: Instant,
}

impl Running {
    pub fn spawn(kubeconfig: &Path, namespace: Option<&str>, args: &[&str]) -> Self {
        let mut command = Command::new(plugin_bin());
        command.arg("--kubeconfig").arg(kubeconfig);
        if let Some(namespace) = namespace {
            command.args(["-n", namespace]);
        }
        command.args(args).stdin(Stdio::null());
        let mut child = spawn_hermetic(command);
        let drain = |mut pipe: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = pipe.read_to_end(&mut bytes);
                bytes
            })
        };
        let stdout = Some(drain(Box::new(child.stdout.take().unwrap())));
        let stderr = Some(drain(Box::new(child.stderr.take().unwrap())));
        Self { child, stdout, stderr, what: args.join(" "), started: Instant::now() }
    }

    pub fn exited(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
    }

    /// Waits until it exits; kills it and fails if that takes longer than `timeout`.
    pub async fn finish(mut self, timeout: Duration) -> (Output, Duration) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                self.kill();
                let status = self.child.wait().unwrap();
                let output = self.output(status);
                panic!("`{}` still ran after {timeout:?}:\n{}\n{}", self.what, stdout(&output), stderr(&output));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let elapsed = self.started.elapsed();
        (self.output(status), elapsed)
    }

    pub fn output(&mut self, status: std::process::ExitStatus) -> Output {
        Output {
            status,
            stdout: self.stdout.take().unwrap().join().unwrap(),
            stderr: self.stderr.take().unwrap().join().unwrap(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
        let _ = self.child.wait();
    }
}
