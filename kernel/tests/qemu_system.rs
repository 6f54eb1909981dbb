//! The whole system under QEMU: kernel → userspace shell, the shell's commands typed over
//! serial, and every negative test run as its own process, watched being refused or killed while
//! the shell keeps answering.
//!
//! Needs the images from `cargo xtask build` (the default system in `brainix-kernel.elf`, the
//! test system with the attack programs in `brainix-kernel-test.elf`).

use brainix_testkit::{Boot, Session, image};
use std::time::Duration;

const PROMPT: &str = "brainix> ";
/// Boot to the prompt takes about 1 s under TCG; the slack is for a loaded CI machine.
const BOOT: Duration = Duration::from_secs(60);
const REPLY: Duration = Duration::from_secs(20);

fn shell(image_name: &str, machine: &str) -> Session {
    let mut s = Boot::new(image(image_name)).machine(machine).spawn();
    s.expect("BRAINIX-BOOT-REPORT v1 ", BOOT);
    s.expect("selfcheck=PASS", REPLY);
    s.expect(PROMPT, BOOT);
    s
}

/// Types `line` and returns what the shell printed before its next prompt.
fn run(s: &mut Session, line: &str) -> String {
    s.type_line(line);
    s.expect(&format!("{line}\r\n"), REPLY);
    s.expect(PROMPT, REPLY)
}

fn boots_to_the_shell(machine: &str) {
    let mut s = shell("brainix-kernel.elf", machine);
    let console = s.console();
    for name in ["console", "init", "shell"] {
        assert!(
            console.contains(&format!("brainix: launched {name} (pid ")),
            "{name} not launched:\n{console}"
        );
    }
    assert!(run(&mut s, "echo still here").contains("still here"));
}

#[test]
fn boots_to_the_shell_on_q35() {
    boots_to_the_shell("q35");
}

#[test]
fn boots_to_the_shell_on_pc() {
    boots_to_the_shell("pc");
}

#[test]
fn boots_to_the_shell_on_microvm() {
    boots_to_the_shell("microvm");
}

/// The pid of `name` in `ps` output.
fn pid_of(ps: &str, name: &str) -> u64 {
    ps.lines()
        .find_map(|l| {
            let mut cols = l.split_whitespace();
            let pid = cols.next()?.parse().ok()?;
            (cols.next()? == name).then_some(pid)
        })
        .unwrap_or_else(|| panic!("{name} not in ps:\n{ps}"))
}

#[test]
fn the_shell_answers_every_command() {
    let mut s = shell("brainix-kernel.elf", "q35");
    let help = run(&mut s, "help");
    for cmd in [
        "ps",
        "caps <pid>",
        "mem",
        "uptime",
        "echo",
        "ipc-bench",
        "kill <pid>",
    ] {
        assert!(help.contains(cmd), "help lacks {cmd}:\n{help}");
    }
    let ps = run(&mut s, "ps");
    let console = pid_of(&ps, "console");
    let shell_pid = pid_of(&ps, "shell");
    assert!(
        ps.lines()
            .any(|l| l.contains("shell") && l.contains("runnable")),
        "{ps}"
    );
    let caps = run(&mut s, &format!("caps {console}"));
    assert!(
        caps.contains("io-ports") && caps.contains("0x3f8+8"),
        "{caps}"
    );
    assert!(caps.contains("irq") && caps.contains("line 4"), "{caps}");
    // The shell holds no I/O ports, no IRQ and no process control: least authority.
    let own = run(&mut s, &format!("caps {shell_pid}"));
    for absent in ["io-ports", "irq", "process-control"] {
        assert!(!own.contains(absent), "the shell holds {absent}:\n{own}");
    }
    let mem = run(&mut s, "mem");
    assert!(mem.contains("frames:") && mem.contains("free of"), "{mem}");
    let up = run(&mut s, "uptime");
    assert!(up.contains("up "), "{up}");
    assert!(run(&mut s, "echo a  b").contains("a  b"));
    let bad = run(&mut s, "frobnicate");
    assert!(
        bad.contains("frobnicate"),
        "an unknown command is named: {bad}"
    );
    let bad = run(&mut s, "caps 999");
    assert!(bad.contains("error"), "{bad}");
}

#[test]
fn ipc_bench_prints_one_machine_readable_line() {
    let mut s = shell("brainix-kernel.elf", "q35");
    let out = run(&mut s, "ipc-bench");
    let line = out
        .lines()
        .find(|l| l.starts_with("IPC-BENCH "))
        .unwrap_or_else(|| panic!("no IPC-BENCH line:\n{out}"));
    let field = |k: &str| -> f64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("{k} missing: {line}"))
            .parse()
            .unwrap_or_else(|_| panic!("{k} not a number: {line}"))
    };
    assert_eq!(field("n"), 10_000.0);
    for k in ["null_median", "null_p99", "call_median", "call_p99"] {
        assert!(field(k) > 0.0, "{line}");
    }
    assert!(field("null_p99") >= field("null_median") && field("call_p99") >= field("call_median"));
    let ratio = field("call_median") / field("null_median");
    assert!(
        (ratio - field("ratio")).abs() < 0.01,
        "ratio is not call/null: {line}"
    );
}

/// Attacks the kernel must refuse with a specific error, the process surviving to say so.
const REFUSED: &[(&str, &str)] = &[
    ("forged-handle", "bad-handle"),
    ("stale-handle", "stale-handle"),
    ("wrong-type", "wrong-type"),
    ("missing-right", "missing-right"),
    ("dead-endpoint", "peer-dead"),
    ("oversize-payload", "payload-too-large"),
    ("bad-lease", "bad-lease"),
];

/// Attacks that must get the process killed by a page fault. The `kernel-` ones first try the
/// same address as a system-call buffer, which must be refused with `bad-address`.
const KILLED: &[&str] = &["write-text", "exec-stack", "kernel-read", "kernel-write"];

#[test]
fn every_attack_is_refused_or_killed_and_the_shell_still_answers() {
    let mut s = shell("brainix-kernel-test.elf", "q35");
    let mut failures = Vec::new();
    for (name, error) in REFUSED {
        s.type_line(&format!("start {name}"));
        // The program prints its line whenever it runs, often after the shell's next prompt.
        let want = format!("ATTACK {name} REFUSED {error}");
        let got = s.expect(&format!("ATTACK {name} "), REPLY) + &s.expect("\n", REPLY);
        if !got.contains(&want) {
            failures.push(format!("{name}: expected {want:?}, got {got:?}"));
        }
        if !run(&mut s, &format!("echo after-{name}")).contains(&format!("after-{name}")) {
            failures.push(format!("{name}: the shell stopped answering"));
        }
    }
    for name in KILLED {
        s.type_line(&format!("start {name}"));
        if name.starts_with("kernel-") {
            // First through a system call: the kernel refuses a kernel address as a buffer.
            let got = s.expect(&format!("ATTACK {name}-buf "), REPLY) + &s.expect("\n", REPLY);
            if !got.contains("REFUSED bad-address") {
                failures.push(format!(
                    "{name}-buf: expected REFUSED bad-address, got {got:?}"
                ));
            }
        }
        s.expect(&format!("ATTACK {name} ATTEMPT"), REPLY);
        let report = s.expect("\n", REPLY);
        let fault = s.expect(&format!("brainix: FAULT: {name} (pid "), REPLY);
        let detail = s.expect("\n", REPLY);
        if !detail.contains("#PF page fault (vector 14)") {
            failures.push(format!(
                "{name}: fault report {fault}{detail:?} ({report:?})"
            ));
        }
        if s.console().contains(&format!("ATTACK {name} NOT-REFUSED")) {
            failures.push(format!("{name}: got through"));
        }
        if !run(&mut s, &format!("echo after-{name}")).contains(&format!("after-{name}")) {
            failures.push(format!("{name}: the shell stopped answering"));
        }
    }
    assert!(
        failures.is_empty(),
        "{failures:#?}\nconsole:\n{}",
        s.console()
    );
}

#[test]
fn a_killed_process_is_reported_and_the_system_goes_on() {
    let mut s = shell("brainix-kernel.elf", "q35");
    let ps = run(&mut s, "ps");
    let echo = pid_of(&ps, "echo");
    let out = run(&mut s, &format!("kill {echo}"));
    assert!(!out.contains("error"), "{out}");
    assert!(
        s.console()
            .contains(&format!("brainix: echo (pid {echo}) stopped")),
        "{}",
        s.console()
    );
    let ps = run(&mut s, "ps");
    assert!(
        ps.lines()
            .any(|l| l.contains("echo") && l.contains("stopped")),
        "{ps}"
    );
    // A call to the stopped server fails at once instead of hanging.
    let bench = run(&mut s, "ipc-bench");
    assert!(bench.contains("peer-dead"), "{bench}");
    let out = run(&mut s, "start echo");
    assert!(!out.contains("error"), "{out}");
    assert!(
        s.console()
            .contains(&format!("brainix: launched echo (pid {echo}, generation 2")),
        "{}",
        s.console()
    );
    assert!(run(&mut s, "ipc-bench").contains("IPC-BENCH "));
}
