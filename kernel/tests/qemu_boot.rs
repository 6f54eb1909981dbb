//! The real kernel under QEMU (TCG): it boots and self-checks on every machine type we ship,
//! refuses CPUs without RDRAND or NX, and reports faults planted by the test image.
//!
//! Needs the images from `cargo xtask build`; `cargo xtask test` builds them first.

use brainix_kernel::exit::ExitCode;
use brainix_kernel::report::crc32;
use brainix_testkit::{Boot, Outcome, image};
use std::time::Duration;

const NONCE: &str = "5eed5eed5eed5eed0123456789abcdef";

fn release() -> Boot {
    Boot::new(image("brainix-kernel.elf"))
}

fn test_image(scenario: &str) -> Outcome {
    Boot::new(image("brainix-kernel-test.elf"))
        .append(&format!("brainix.test={scenario}"))
        .run()
}

/// The frames of one boot, checked the way lab-runner checks them: nonce, sequence and CRC.
fn frames(out: &Outcome) -> Vec<String> {
    let mut bodies = Vec::new();
    for (seq, line) in out
        .serial
        .lines()
        .filter(|l| l.starts_with("BNX1 "))
        .enumerate()
    {
        let (text, crc) = line.rsplit_once(" *").expect("frame without checksum");
        assert_eq!(
            crc,
            format!("{:08x}", crc32(text.as_bytes())),
            "bad CRC: {line}"
        );
        let prefix = format!("BNX1 {NONCE} {seq} ");
        let body = text
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("{line} lacks {prefix:?}"));
        bodies.push(body.to_owned());
    }
    bodies
}

/// Boots the release image until the result frames end: the kernel's seven, then the shell's two
/// from its report capabilities (`shell.ready` before it reads, `ipc.call-reply` from the typed
/// `ipc-bench`), after which, and only after which, the kernel sends END. The system goes on
/// (see `qemu_system.rs`); the harness stops it here.
fn boots_and_self_checks(machine: &str) {
    let mut session = release()
        .machine(machine)
        .append(&format!("brainix.nonce={NONCE}"))
        .spawn();
    session.expect(
        &format!("BNX1 {NONCE} 8 RESULT shell.ready PASS "),
        Duration::from_secs(60),
    );
    assert!(
        !session.console().contains(" END "),
        "END before every report"
    );
    session.type_line("ipc-bench");
    session.expect(&format!("BNX1 {NONCE} 10 END 9 *"), Duration::from_secs(60));
    session.expect("\n", Duration::from_secs(10));
    let out = session.outcome();
    let report = out
        .boot_report()
        .unwrap_or_else(|| panic!("no single boot report\n{}", out.dump()));
    assert_eq!(report["selfcheck"], "PASS", "{}", out.dump());
    assert_eq!(report["boot"], "pvh");
    let enabled: Vec<&str> = report["enabled"].split(',').collect();
    for needed in ["nxe", "wp", "smep", "smap", "umip"] {
        // `-cpu max` under TCG has all of these; each must then be on.
        assert!(
            enabled.contains(&needed),
            "{needed} not enabled: {}",
            report["enabled"]
        );
    }
    assert!(
        report["cpu"].contains("-pcid"),
        "TCG has no PCID: {}",
        report["cpu"]
    );
    let (free, managed) = report["frames"].split_once('/').unwrap();
    assert!(free.parse::<u64>().unwrap() > 30_000 && managed.parse::<u64>().unwrap() > 30_000);

    let bodies = frames(&out);
    assert!(bodies[0].starts_with("PLAN "), "plan first: {bodies:?}");
    let planned: Vec<&str> = bodies[0]["PLAN ".len()..].split(',').collect();
    for id in &planned {
        let result = bodies
            .iter()
            .find(|b| b.starts_with(&format!("RESULT {id} ")))
            .unwrap_or_else(|| panic!("no result for {id}: {bodies:?}"));
        assert!(
            result.starts_with(&format!("RESULT {id} PASS ")),
            "{result}"
        );
    }
    assert_eq!(bodies.last().unwrap(), &format!("END {}", planned.len()));
    assert_eq!(
        planned[planned.len() - 2..],
        ["shell.ready", "ipc.call-reply"],
        "the manifest's report ids are announced"
    );
}

#[test]
fn boots_and_self_checks_on_q35() {
    boots_and_self_checks("q35");
}

#[test]
fn boots_and_self_checks_on_pc() {
    boots_and_self_checks("pc");
}

#[test]
fn boots_and_self_checks_on_microvm() {
    boots_and_self_checks("microvm");
}

fn refuses(cpu: &str, line: &str, code: ExitCode) {
    let out = release()
        .cpu(cpu)
        .append(&format!("brainix.nonce={NONCE}"))
        .run();
    assert_eq!(out.status, Some(code.qemu_status()), "{}", out.dump());
    let refusal: Vec<&str> = out.serial.lines().filter(|l| l.contains("FATAL")).collect();
    assert_eq!(refusal, [line], "{}", out.dump());
    assert!(
        out.boot_report().is_none(),
        "a refused boot must not report: {}",
        out.dump()
    );
    assert!(frames(&out).is_empty(), "a refused boot sends no results");
}

#[test]
fn refuses_a_cpu_without_rdrand() {
    refuses(
        "max,-rdrand",
        "brainix: FATAL: CPU lacks RDRAND (CPUID.01H:ECX[30]); BraiNIX requires it and refuses to boot",
        ExitCode::MissingRdrand,
    );
}

#[test]
fn refuses_a_cpu_without_nx() {
    refuses(
        "max,-nx",
        "brainix: FATAL: CPU lacks NX (CPUID.80000001H:EDX[20]); BraiNIX requires it and refuses to boot",
        ExitCode::MissingNx,
    );
}

#[test]
fn never_touches_the_debug_exit_port_unless_told() {
    // Without the option the kernel halts when it stops; QEMU stays up until the harness kills
    // it. The pool scenario stops with the success code.
    let out = Boot::new(image("brainix-kernel-test.elf"))
        .without_debug_exit()
        .append("brainix.test=pool-exhaust")
        .timeout(Duration::from_secs(4))
        .run();
    assert!(out.timed_out, "{}", out.dump());
    assert_eq!(out.boot_report().unwrap()["selfcheck"], "PASS");
    assert!(
        out.serial.contains("brainix: stopping, exit code 0x10"),
        "{}",
        out.dump()
    );
}

#[test]
fn stops_after_the_report_when_asked_and_starts_nothing() {
    let out = release()
        .append(&format!("brainix.after-report=stop brainix.nonce={NONCE}"))
        .run();
    assert_eq!(
        out.status,
        Some(ExitCode::Success.qemu_status()),
        "{}",
        out.dump()
    );
    assert_eq!(frames(&out).last().map(String::as_str), Some("END 7"));
    assert!(!out.serial.contains("brainix: launched"), "{}", out.dump());
}

#[test]
fn the_release_image_ignores_test_scenarios() {
    let mut s = release().append("brainix.test=pagefault").spawn();
    s.expect(
        "test scenario \"pagefault\" ignored: this is the release image",
        Duration::from_secs(60),
    );
    s.expect("brainix> ", Duration::from_secs(60));
    assert!(!s.console().contains("exception"), "{}", s.console());
}

#[test]
fn the_multiboot_image_enters_by_multiboot() {
    let mut s = Boot::new(image("brainix-kernel-multiboot.elf")).spawn();
    s.expect("brainix> ", Duration::from_secs(60));
    let report = s.outcome().boot_report().expect("boot report");
    assert_eq!(
        (report["boot"].as_str(), report["selfcheck"].as_str()),
        ("multiboot", "PASS")
    );
}

/// Checks the exception report: one FATAL line naming the vector, and the detail lines.
fn faulted(out: &Outcome, vector: u8, name: &str, details: &[&str]) {
    assert_eq!(
        out.status,
        Some(ExitCode::Exception(vector).qemu_status()),
        "{}",
        out.dump()
    );
    let fatal = format!("brainix: FATAL: exception {name} (vector {vector}) in kernel context");
    assert!(
        out.serial.lines().any(|l| l == fatal),
        "missing {fatal:?}\n{}",
        out.dump()
    );
    for d in details {
        assert!(out.serial.contains(d), "missing {d:?}\n{}", out.dump());
    }
    assert!(
        out.serial.contains("rip=0x") && out.serial.contains("rax="),
        "{}",
        out.dump()
    );
}

#[test]
fn a_read_of_an_unmapped_address_is_a_reported_page_fault() {
    let out = test_image("pagefault");
    faulted(
        &out,
        14,
        "#PF page fault",
        &["[not-present, read, supervisor]", "cr2=0x0000700000000000"],
    );
}

#[test]
fn a_write_to_kernel_text_is_refused() {
    let out = test_image("write-text");
    faulted(
        &out,
        14,
        "#PF page fault",
        &["[protection, write, supervisor]", "cr2=0xffffffff801"],
    );
}

#[test]
fn executing_data_is_refused() {
    let out = test_image("exec-data");
    faulted(
        &out,
        14,
        "#PF page fault",
        &["[protection, read, supervisor, instruction-fetch]"],
    );
}

#[test]
fn a_stack_overflow_hits_the_guard_page_and_is_reported_from_the_ist_stack() {
    let out = test_image("stack-overflow");
    faulted(&out, 8, "#DF double fault", &[]);
    // The page fault that turned into the double fault hit the boot stack's guard page, which
    // is the first page of the BOOT_STACK object.
    let data = std::fs::read(image("brainix-kernel-test.elf")).unwrap();
    let file = object::File::parse(&*data).unwrap();
    use object::{Object, ObjectSymbol};
    let guard = file
        .symbols()
        .find(|s| s.name().is_ok_and(|n| n.contains("stacks10BOOT_STACK")))
        .expect("BOOT_STACK symbol")
        .address();
    let cr2 = out.serial.split("cr2=0x").nth(1).expect("cr2 in report");
    let cr2 = u64::from_str_radix(&cr2[..16], 16).unwrap();
    assert!(
        (guard..guard + 4096).contains(&cr2),
        "cr2 {cr2:#x} not in guard page {guard:#x}"
    );
}

#[test]
fn an_invalid_opcode_is_reported() {
    faulted(&test_image("invalid-opcode"), 6, "#UD invalid opcode", &[]);
}

#[test]
fn a_panic_is_reported_with_its_message() {
    let out = test_image("panic");
    assert_eq!(
        out.status,
        Some(ExitCode::Panic.qemu_status()),
        "{}",
        out.dump()
    );
    assert!(
        out.serial
            .contains("brainix: FATAL: kernel panic: panicked at"),
        "{}",
        out.dump()
    );
    assert!(out.serial.contains("test scenario asked for a panic"));
}

#[test]
fn a_planted_wx_page_fails_the_self_check_at_its_address() {
    let out = Boot::new(image("brainix-kernel-test.elf"))
        .append(&format!("brainix.test=wx-violation brainix.nonce={NONCE}"))
        .run();
    assert_eq!(
        out.status,
        Some(ExitCode::SelfCheckFailed.qemu_status()),
        "{}",
        out.dump()
    );
    let report = out.boot_report().expect("boot report");
    assert_eq!(report["selfcheck"], "FAIL@0xffffff0000000000");
    let bodies = frames(&out);
    assert!(
        bodies.iter().any(
            |b| b == "RESULT mem.wx FAIL page is writable and executable at 0xffffff0000000000"
        ),
        "{bodies:?}"
    );
    // The other properties still hold and say so.
    assert!(
        bodies
            .iter()
            .any(|b| b.starts_with("RESULT mem.sections PASS"))
    );
}

#[test]
fn exhausting_the_frame_pool_is_an_error_not_a_panic() {
    let out = test_image("pool-exhaust");
    assert_eq!(
        out.status,
        Some(ExitCode::Success.qemu_status()),
        "{}",
        out.dump()
    );
    let report = out.boot_report().unwrap();
    let free: usize = report["frames"].split_once('/').unwrap().0.parse().unwrap();
    let expect = format!(
        "brainix: test: pool exhausted after {free} of {free} free frames: frame pool exhausted"
    );
    assert!(
        out.serial.lines().any(|l| l == expect),
        "missing {expect:?}\n{}",
        out.dump()
    );
    let back = format!("brainix: test: returned {free}; free again {free}");
    assert!(
        out.serial.lines().any(|l| l == back),
        "missing {back:?}\n{}",
        out.dump()
    );
}
