//! A real terminal for the tests (tmux: new-session, send-keys, capture-pane): a tmux server
//! of the terminal's own, on a socket in a directory of its own, so that tests in parallel and
//! the user's own sessions never meet; killed, and its directory removed, when dropped.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{assert_success, stdout};

/// The wait-for channel the terminal's script signals when its command has exited.
const EXITED: &str = "exited";

pub struct Terminal {
    socket: PathBuf,
    _socket_dir: tempfile::TempDir,
}

impl Terminal {
    /// Runs the shell command line `command` in a new 200x50 terminal, without NO_COLOR. The pane
    /// stays after the command exits, with `EXIT=<status>` below its output, so its last screen
    /// can be read.
    pub fn start(command: &str) -> Self {
        let dir = tempfile::Builder::new().prefix("hpa-migrate-tmux-").tempdir().expect("a directory for the socket");
        let terminal = Self { socket: dir.path().join("socket"), _socket_dir: dir };
        let script =
            format!("{command}; echo EXIT=$?; tmux -S '{}' wait-for -S {EXITED}; sleep 300", terminal.socket.display());
        terminal.tmux(&["new-session", "-d", "-x", "200", "-y", "50", &script]);
        terminal
    }

    /// Runs tmux on the terminal's server (started by the first call, in this process's
    /// environment without NO_COLOR), with no user configuration, and checks it succeeded.
    fn tmux(&self, args: &[&str]) -> Output {
        let output = Command::new("timeout")
            .args(["60", "tmux", "-f", "/dev/null", "-S"])
            .arg(&self.socket)
            .args(args)
            .env_remove("NO_COLOR")
            .env_remove("TMUX")
            .stdin(Stdio::null())
            .output()
            .expect("running tmux (.ci/run installs it)");
        assert_success(&output, &format!("tmux {}", args.join(" ")));
        output
    }

    /// The screen and up to 200 lines above it, wrapped lines joined.
    pub fn screen(&self) -> String {
        stdout(&self.tmux(&["capture-pane", "-p", "-J", "-S", "-200"]))
    }

    /// Waits until the command has exited, and returns the screen then, colours included as
    /// escape codes.
    pub fn screen_at_exit(&self) -> String {
        self.tmux(&["wait-for", EXITED]);
        stdout(&self.tmux(&["capture-pane", "-p", "-e", "-J", "-S", "-200"]))
    }

    /// Waits up to 60 s until the screen shows `text`.
    pub async fn wait_for(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return;
            }
            let tail: Vec<&str> = screen.lines().filter(|l| !l.trim().is_empty()).collect();
            let tail = tail[tail.len().saturating_sub(25)..].join("\n");
            assert!(Instant::now() < deadline, "timed out waiting for {text:?}; the end of the screen:\n{tail}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Types `keys` (tmux key names: `Enter`, `y`, ...).
    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys"];
        args.extend_from_slice(keys);
        self.tmux(&args);
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = Command::new("tmux").arg("-S").arg(&self.socket).arg("kill-server").output();
    }
}
