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

/// Types `line` and returns what the console showed until the shell's next prompt, which the
/// shell prints only once the command is done. The text includes the echo of the typed line, so
/// assertions look for whole lines of output ([`has_line`]), never for words the command itself
/// contains.
fn run(s: &mut Session, line: &str) -> String {
    s.type_line(line);
    s.expect(PROMPT, REPLY)
}

/// Waits until the console shows `needle` somewhere after byte `from` and returns the line from
/// `needle` to its end. For output that programs print on their own time, which may land before
/// or after the shell's next prompt.
fn eventually(s: &Session, from: usize, needle: &str) -> String {
    let deadline = std::time::Instant::now() + REPLY;
    loop {
        let console = s.console();
        if let Some(at) = console.get(from..).and_then(|t| t.find(needle)) {
            let rest = &console[from + at..];
            if let Some(end) = rest.find('\n') {
                return rest[..end].trim_end_matches('\r').to_owned();
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{needle:?} did not appear; console:\n{console}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether `out` has a line that is exactly `text` (ignoring the line end).
fn has_line(out: &str, text: &str) -> bool {
    out.lines().any(|l| l.trim_end_matches('\r') == text)
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
    let out = run(&mut s, "echo still here");
    assert!(has_line(&out, "still here"), "{out}");
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
        let from = s.console().len();
        run(&mut s, &format!("start {name}"));
        let got = eventually(&s, from, &format!("ATTACK {name} "));
        let want = format!("ATTACK {name} REFUSED {error}");
        if got != want {
            failures.push(format!("{name}: expected {want:?}, got {got:?}"));
        }
        if !has_line(
            &run(&mut s, &format!("echo after-{name}")),
            &format!("after-{name}"),
        ) {
            failures.push(format!("{name}: the shell stopped answering"));
        }
    }
    for name in KILLED {
        let from = s.console().len();
        run(&mut s, &format!("start {name}"));
        if name.starts_with("kernel-") {
            // First through a system call: the kernel refuses a kernel address as a buffer.
            let got = eventually(&s, from, &format!("ATTACK {name}-buf "));
            if got != format!("ATTACK {name}-buf REFUSED bad-address") {
                failures.push(format!(
                    "{name}-buf: expected REFUSED bad-address, got {got:?}"
                ));
            }
        }
        eventually(&s, from, &format!("ATTACK {name} ATTEMPT"));
        let fault = eventually(&s, from, &format!("brainix: FAULT: {name} (pid "));
        if !fault.contains("#PF page fault (vector 14)") {
            failures.push(format!("{name}: fault report {fault:?}"));
        }
        // The attempt must come before the fault, and nothing may claim success.
        let console = s.console();
        let attempt_at = console[from..].find(&format!("ATTACK {name} ATTEMPT"));
        let fault_at = console[from..].find(&format!("brainix: FAULT: {name} (pid "));
        if attempt_at >= fault_at {
            failures.push(format!("{name}: the fault came before the attempt"));
        }
        if console[from..].contains(&format!("ATTACK {name} NOT-REFUSED")) {
            failures.push(format!("{name}: got through"));
        }
        if !has_line(
            &run(&mut s, &format!("echo after-{name}")),
            &format!("after-{name}"),
        ) {
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

#[test]
fn device_regions_are_mapped_as_granted_and_no_further() {
    let mut s = shell("brainix-kernel-test.elf", "q35");
    let from = s.console().len();
    run(&mut s, "start region-probe");
    let mmio = eventually(&s, from, "REGION mmio ");
    // The HPET's registers, read through the mapping: Intel's vendor id in QEMU's HPET.
    assert_eq!(
        mmio,
        "REGION mmio virt=0x600040000000 phys=0xfed00000 len=4096 vendor=0x8086"
    );
    let dma = eventually(&s, from, "REGION dma ");
    assert!(
        dma.starts_with("REGION dma virt=0x600080000000 phys=0x")
            && dma.ends_with(" len=16384 pattern=ok"),
        "{dma}"
    );
    let phys = dma
        .split("phys=0x")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    let phys = u64::from_str_radix(phys, 16).unwrap();
    assert!(phys != 0 && phys.is_multiple_of(4096), "{dma}");
    assert_eq!(
        eventually(&s, from, "ATTACK region-type "),
        "ATTACK region-type REFUSED wrong-type"
    );
    eventually(&s, from, "ATTACK mmio-write ATTEMPT");
    let fault = eventually(&s, from, "brainix: FAULT: region-probe (pid ");
    assert!(
        fault.contains("#PF page fault (vector 14)") && fault.contains("addr=0x600040000000"),
        "{fault}"
    );
    // An "MMIO" capability over RAM is refused at launch, whatever the manifest says.
    let from = s.console().len();
    run(&mut s, "start mmio-on-ram");
    let refusal = eventually(&s, from, "brainix: cannot launch mmio-on-ram (pid ");
    assert!(
        refusal
            .ends_with("capability slot 1: region at 0x100000 is not device memory or too large"),
        "{refusal}"
    );
    assert!(has_line(&run(&mut s, "echo still-here"), "still-here"));
}
