//! Child processes that cannot outlive the runner.
//!
//! Every process the runner starts (QEMU, swtpm, power and flashing commands) runs in a process
//! group of its own. Dropping the [`Guard`] — on success, error, timeout, or a Ctrl-C that drops
//! the whole run — kills the group with SIGKILL, so helpers a command forked die too. On Linux the
//! child also gets `PR_SET_PDEATHSIG`, so a runner killed with SIGKILL (no destructors) still takes
//! its children with it.

use std::io;
use std::process::Stdio;

use tokio::process::{Child, Command};

/// A child process and its group, killed when dropped.
#[derive(Debug)]
pub struct Guard {
    child: Child,
    pgid: Option<i32>,
    /// What it is, for messages.
    pub name: String,
}

/// Starts `cmd` in a new process group, with stdin closed unless the caller set it.
pub fn spawn(cmd: &mut Command, name: &str) -> io::Result<Guard> {
    cmd.process_group(0).kill_on_drop(true);
    #[cfg(target_os = "linux")]
    // SAFETY: the closure runs in the forked child before exec and calls only prctl(2), which is
    // async-signal-safe; it touches no memory shared with the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) == -1
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    let pgid = child.id().map(|p| p as i32);
    Ok(Guard {
        child,
        pgid,
        name: name.to_owned(),
    })
}

/// A command with all three standard streams set to nothing; callers override what they read.
pub fn quiet(program: &str) -> Command {
    let mut c = Command::new(program);
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

impl Guard {
    /// The child's pid (also its process-group id).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The underlying child, for taking its pipes.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Waits for the child; `None` when it died from a signal or could not be waited for.
    pub async fn wait(&mut self) -> Option<i32> {
        self.child.wait().await.ok().and_then(|s| s.code())
    }

    /// Kills the whole group now (idempotent).
    pub fn kill_group(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            // SAFETY: kill(2) with a negative pid signals the process group we created for this
            // child in `spawn`; it reads no memory of ours.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
        let _ = self.child.start_kill();
    }

    /// Kills the group and waits for the child to be reaped.
    pub async fn kill_and_reap(&mut self) {
        self.kill_group();
        let _ = self.child.wait().await;
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.kill_group();
        // tokio reaps a killed, dropped child in the background (kill_on_drop).
    }
}

/// True when a process with this pid exists and is not a zombie (for leak tests).
pub fn is_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn dropping_the_guard_kills_grandchildren_too() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("grandchild.pid");
        let mut cmd = quiet("sh");
        cmd.arg("-c")
            .arg(format!("sleep 300 & echo $! > {}; wait", pidfile.display()));
        let guard = spawn(&mut cmd, "test").unwrap();
        let child = guard.pid().unwrap();
        let mut grandchild = None;
        for _ in 0..100 {
            if let Some(p) = std::fs::read_to_string(&pidfile)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
            {
                grandchild = Some(p);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let grandchild = grandchild.expect("grandchild started");
        assert!(is_alive(child) && is_alive(grandchild));
        drop(guard);
        for _ in 0..100 {
            if !is_alive(child) && !is_alive(grandchild) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("child {child} or grandchild {grandchild} survived the guard");
    }
}
