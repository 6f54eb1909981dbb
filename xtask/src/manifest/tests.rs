//! One test per kind of complaint, each checking the line and the words, plus systems that pass.

use super::*;

const GOOD: &str = r#"name = "t"

[[endpoint]]
name = "svc"

[[process]]
name = "server"
program = "p"
priority = 1
memory_pages = 64
stack_pages = 4
caps = [
  { type = "endpoint", endpoint = "svc", rights = ["receive"] },
  { type = "irq", line = 4, bit = 0 },
  { type = "io-ports", base = 0x3f8, count = 8, rights = ["read", "write"] },
]

[[process]]
name = "client"
program = "p"
bin = "client-bin"
priority = 2
memory_pages = 64
stack_pages = 4
start = false
restartable = true
caps = [
  { type = "endpoint", endpoint = "svc", rights = ["send"], badge = 7 },
  { type = "log" },
  { type = "audit-read" },
  { type = "process-control", process = "server" },
]
"#;

fn file() -> &'static Path {
    Path::new("system/t.toml")
}

/// The 1-based line of the first line containing `needle`.
fn line(src: &str, needle: &str) -> usize {
    src.lines().position(|l| l.contains(needle)).expect(needle) + 1
}

/// Asserts `src` is refused with a complaint on `at` (a line number) containing every word.
#[track_caller]
fn refused(src: &str, at: usize, words: &[&str]) {
    let errors = check(file(), src).expect_err("should be refused").0;
    let hit = errors
        .iter()
        .find(|d| d.line == at && words.iter().all(|w| d.message.contains(w)));
    assert!(
        hit.is_some(),
        "no complaint on line {at} with {words:?}; got:\n{}",
        Errors(errors)
    );
    let text = hit.unwrap().to_string();
    assert!(text.starts_with(&format!("system/t.toml:{at}: ")), "{text}");
}

fn replace(from: &str, to: &str) -> String {
    assert!(GOOD.contains(from), "{from}");
    GOOD.replacen(from, to, 1)
}

/// A process that adds nothing but its name.
fn extra_process(name: &str) -> String {
    format!(
        "\n[[process]]\nname = \"{name}\"\nprogram = \"p\"\npriority = 3\nmemory_pages = 64\nstack_pages = 1\n"
    )
}

#[test]
fn a_good_system_passes_and_resolves_everything() {
    let system = check(file(), GOOD).unwrap();
    assert_eq!(system.endpoints, ["svc"]);
    let [server, client] = &system.processes[..] else {
        panic!()
    };
    assert_eq!(
        server.caps,
        [
            Cap::Endpoint {
                endpoint: 0,
                rights: rights::RECEIVE,
                badge: 0
            },
            Cap::Irq { line: 4, bit: 0 },
            Cap::IoPorts {
                base: 0x3f8,
                count: 8,
                rights: rights::READ | rights::WRITE
            },
        ]
    );
    assert_eq!(
        (server.bin.as_str(), server.start, server.restartable),
        ("p", true, false)
    );
    assert_eq!(
        (client.bin.as_str(), client.start, client.restartable),
        ("client-bin", false, true)
    );
    assert_eq!(client.caps[3], Cap::ProcessControl { pid: 0 });
    let text = generate(
        &system,
        &[PathBuf::from("/a/server"), PathBuf::from("/a/client")],
    );
    assert!(text.contains("image: include_bytes!(\"/a/client\")"));
    assert!(text.contains(
        "crate::manifest::CapSpec::Endpoint { endpoint: 0, rights: brainix_abi::rights::SEND, badge: 7 }, // slot 0"
    ));
    assert!(text.contains("IoPorts { base: 0x3f8, count: 8, rights: brainix_abi::rights::READ | brainix_abi::rights::WRITE }"));
    assert!(text.contains("endpoints: 1,"));
}

#[test]
fn the_shipped_systems_pass() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../system");
    for name in ["default.toml", "test.toml"] {
        let path = root.join(name);
        let src = std::fs::read_to_string(&path).unwrap();
        if let Err(e) = check(&path, &src) {
            panic!("{e}");
        }
    }
}

/// The capability a program expects at a slot, as its `brainix_proto` module names it.
#[derive(Debug)]
enum Expect {
    Endpoint(&'static str, u64),
    IoPorts(u16, u16, u64),
    Irq(u8, u8),
    Mmio(u64, u32, u64),
    DmaPool(u32),
    ProcessControl,
    AuditRead,
    Log,
    /// A report capability for this check id.
    Report(String),
    /// A device capability: the PCI vendor and which part (`config`, `bar`, `irq`).
    Device(u16, &'static str),
    /// A DMA pool of any size.
    AnyDmaPool,
}

fn matches(system: &System, cap: &Cap, want: &Expect) -> bool {
    match (*cap, want) {
        (
            Cap::Endpoint {
                endpoint, rights, ..
            },
            Expect::Endpoint(name, r),
        ) => system.endpoints[usize::from(endpoint)] == *name && rights == *r,
        (
            Cap::IoPorts {
                base,
                count,
                rights,
            },
            &Expect::IoPorts(b, c, r),
        ) => (base, count, rights) == (b, c, r),
        (Cap::Irq { line, bit }, &Expect::Irq(l, b)) => (line, bit) == (l, b),
        (
            Cap::Mmio {
                base,
                pages,
                rights,
            },
            &Expect::Mmio(b, p, r),
        ) => (base, pages, rights) == (b, p, r),
        (Cap::DmaPool { pages }, &Expect::DmaPool(p)) => pages == p,
        (Cap::ProcessControl { .. }, Expect::ProcessControl) => true,
        (Cap::AuditRead, Expect::AuditRead) => true,
        (Cap::Log, Expect::Log) => true,
        (Cap::Report { index }, Expect::Report(id)) => system.reports[usize::from(index)] == *id,
        (Cap::DmaPool { .. }, Expect::AnyDmaPool) => true,
        (Cap::Device { pci, part }, &Expect::Device(vendor, kind)) => {
            use brainix_kernel::manifest::DevicePart;
            pci.vendor == vendor
                && matches!(
                    (part, kind),
                    (DevicePart::Config { .. }, "config")
                        | (DevicePart::Bar { .. }, "bar")
                        | (DevicePart::Irq { .. }, "irq")
                )
        }
        _ => false,
    }
}

#[test]
fn the_shipped_systems_give_each_program_the_slots_it_opens() {
    use brainix_proto::{
        attack, auditor, consent, console, driver, echo, fs, fuzz, ip, shell, supervisor, transport,
    };
    let (send, receive) = (rights::SEND, rights::RECEIVE);
    let rw = rights::READ | rights::WRITE;
    // A virtio device server's slots (`driver::slots`): the endpoint it serves, its IRQ wait.
    let device_server = |served: &'static str, irq_wait: &'static str| {
        vec![
            (driver::slots::ENDPOINT, Expect::Endpoint(served, receive)),
            (driver::slots::IRQ_WAIT, Expect::Endpoint(irq_wait, receive)),
            (driver::slots::LOG, Expect::Log),
            (driver::slots::DMA, Expect::AnyDmaPool),
            (driver::slots::IRQ, Expect::Device(0x1af4, "irq")),
            (driver::slots::DEVICE, Expect::Device(0x1af4, "config")),
            (driver::slots::FIRST_BAR, Expect::Device(0x1af4, "bar")),
        ]
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../system");
    for name in ["default.toml", "test.toml"] {
        let path = root.join(name);
        let system = check(&path, &std::fs::read_to_string(&path).unwrap()).unwrap();
        for p in &system.processes {
            let layout: Vec<(u16, Expect)> = match p.package.as_str() {
                "brainix-init" => {
                    let mut l = vec![
                        (supervisor::slots::LOG, Expect::Log),
                        (supervisor::slots::AUDIT, Expect::AuditRead),
                        (
                            supervisor::slots::ENDPOINT,
                            Expect::Endpoint("supervisor", receive),
                        ),
                    ];
                    // Process control for each supervised process; after one whose death is a
                    // check's verdict (attack::FAULTS), the report capability for that check.
                    let mut slot = supervisor::slots::FIRST_CONTROL;
                    while let Some(&cap) = p.caps.get(usize::from(slot)) {
                        l.push((slot, Expect::ProcessControl));
                        slot += 1;
                        let Cap::ProcessControl { pid } = cap else {
                            break;
                        };
                        let target = &system.processes[usize::from(pid)].name;
                        if let Some(Cap::Report { index }) = p.caps.get(usize::from(slot)) {
                            assert!(
                                attack::fault_for(target).is_some(),
                                "{name}: init judges {target}'s death ({}), which has no fault expectation",
                                system.reports[usize::from(*index)]
                            );
                            let id = system.reports[usize::from(*index)].clone();
                            l.push((slot, Expect::Report(id)));
                            slot += 1;
                        }
                    }
                    l
                }
                "brainix-console" => vec![
                    (
                        console::slots::ENDPOINT,
                        Expect::Endpoint("console", receive),
                    ),
                    (console::slots::COM1, Expect::IoPorts(0x3f8, 8, rw)),
                    (console::slots::IRQ, Expect::Irq(4, console::IRQ_BIT)),
                    (console::slots::LOG, Expect::Log),
                ],
                "brainix-shell" => {
                    let mut l = vec![
                        (shell::slots::CONSOLE, Expect::Endpoint("console", send)),
                        (
                            shell::slots::SUPERVISOR,
                            Expect::Endpoint("supervisor", send),
                        ),
                        (shell::slots::AUDIT, Expect::AuditRead),
                        (shell::slots::ECHO, Expect::Endpoint("echo", send)),
                        (4, Expect::Report(shell::READY.into())),
                        (5, Expect::Report("ipc.call-reply".into())),
                        (shell::slots::AUDITOR, Expect::Endpoint("auditor", send)),
                        (shell::slots::CONSENT, Expect::Endpoint("consent", send)),
                        (shell::slots::FS, Expect::Endpoint("fs", send)),
                        (shell::slots::ENTROPY, Expect::Endpoint("entropy", send)),
                    ];
                    if name == "test.toml" {
                        l.push((shell::slots::FUZZ, Expect::Endpoint("fuzz", send)));
                        l.push((11, Expect::Report("fuzz.survived".into())));
                        l.push((shell::slots::IP, Expect::Endpoint("ip", send)));
                    }
                    l
                }
                "brainix-auditor" => {
                    let mut l = vec![
                        (
                            auditor::slots::ENDPOINT,
                            Expect::Endpoint("auditor", receive),
                        ),
                        (auditor::slots::CONSOLE, Expect::Endpoint("console", send)),
                        (auditor::slots::AUDIT, Expect::AuditRead),
                    ];
                    if name == "test.toml" {
                        // In the order the auditor reports them (its `verdict` module).
                        let ids = [
                            "audit.capabilities",
                            "audit.forbidden-refused",
                            "audit.fault-observed",
                            "audit.on-demand",
                            "auth.caps-frozen",
                            "mem.kpti",
                            "ipc.no-shared-memory",
                        ];
                        for (i, id) in ids.iter().enumerate() {
                            l.push((3 + i as u16, Expect::Report(id.to_string())));
                        }
                    }
                    l
                }
                "brainix-consent" => vec![
                    (
                        consent::slots::ENDPOINT,
                        Expect::Endpoint("consent", receive),
                    ),
                    (consent::slots::CONSOLE, Expect::Endpoint("console", send)),
                    (consent::slots::AUDIT, Expect::AuditRead),
                    (consent::slots::FIRST_CONTROL, Expect::ProcessControl),
                ],
                "brainix-assist" => {
                    let mut l = vec![
                        (consent::tenant::CONSENT, Expect::Endpoint("consent", send)),
                        (consent::tenant::CONSOLE, Expect::Endpoint("console", send)),
                        (consent::tenant::AUDIT, Expect::AuditRead),
                    ];
                    let ids = [
                        "assist.tenant-only",
                        "assist.deny",
                        "assist.approve-once",
                        "assist.forged-refused",
                        "assist.replay-refused",
                        "assist.timeout-denies",
                    ];
                    for (i, id) in ids.iter().enumerate() {
                        l.push((3 + i as u16, Expect::Report(id.to_string())));
                    }
                    l
                }
                "brainix-fuzz" => vec![
                    (fuzz::slots::ENDPOINT, Expect::Endpoint("fuzz", receive)),
                    (fuzz::slots::ECHO, Expect::Endpoint("echo", send)),
                    (fuzz::slots::PORT, Expect::IoPorts(0x80, 1, rights::READ)),
                    (fuzz::slots::AUDIT, Expect::AuditRead),
                ],
                "brainix-virtio-rng" => device_server("entropy", "entropy-irq"),
                "brainix-virtio-blk" => device_server("block", "block-irq"),
                "brainix-ip" => vec![
                    (ip::slots::ENDPOINT, Expect::Endpoint("ip", receive)),
                    (ip::slots::LINK, Expect::Endpoint("link", send)),
                    (ip::slots::LOG, Expect::Log),
                ],
                "brainix-transport"
                    if p.bin == "brainix-transport" || p.bin == "transport-faulty" =>
                {
                    vec![
                        (
                            transport::slots::ENDPOINT,
                            Expect::Endpoint("transport", receive),
                        ),
                        (transport::slots::IP, Expect::Endpoint("ip", send)),
                        (transport::slots::LOG, Expect::Log),
                    ]
                }
                "brainix-transport" => {
                    // The combined server's echo clients: its endpoint, and a nap of their own.
                    let served = if p.name.ends_with("-combined") {
                        "combined"
                    } else {
                        "transport"
                    };
                    let mut l = vec![
                        (
                            transport::client_slots::CONSOLE,
                            Expect::Endpoint("console", send),
                        ),
                        (
                            transport::client_slots::TRANSPORT,
                            Expect::Endpoint(served, send),
                        ),
                    ];
                    if p.bin == "udp-echo" || p.bin == "tcp-echo" {
                        let nap = match p.name.as_str() {
                            "udp-echo" => "udp-echo-nap",
                            "tcp-echo" => "tcp-echo-nap",
                            "udp-echo-combined" => "udp-echo-combined-nap",
                            "tcp-echo-combined" => "tcp-echo-combined-nap",
                            other => panic!("{other}: an echo client with no nap known here"),
                        };
                        l.push((transport::client_slots::NAP, Expect::Endpoint(nap, receive)));
                    }
                    l
                }
                // A device server's slots, serving the transport protocol.
                "brainix-netstack-combined" => device_server("combined", "combined-irq"),
                "brainix-virtio-net" if p.bin == "link-probe" => vec![
                    (0, Expect::Endpoint("console", send)),
                    (1, Expect::Endpoint("link", send)),
                ],
                "brainix-virtio-net" => device_server("link", "link-irq"),
                "brainix-fs" => vec![
                    (fs::slots::ENDPOINT, Expect::Endpoint("fs", receive)),
                    (fs::slots::BLOCK, Expect::Endpoint("block", send)),
                    (fs::slots::LOG, Expect::Log),
                ],
                "brainix-echo" => {
                    let Cap::Endpoint { endpoint, .. } = p.caps[0] else {
                        panic!("{}: slot 0 is not an endpoint", p.name)
                    };
                    let served = system.endpoints[usize::from(endpoint)].as_str();
                    let served: &'static str = if served == "echo" { "echo" } else { "victim" };
                    vec![(echo::slots::ENDPOINT, Expect::Endpoint(served, receive))]
                }
                "brainix-attacks" => {
                    let mut l = vec![(attack::slots::CONSOLE, Expect::Endpoint("console", send))];
                    let target = match p.bin.as_str() {
                        "stale-handle" | "missing-right" | "oversize-payload" | "kernel-read"
                        | "kernel-write" => Some(Expect::Endpoint("echo", send)),
                        "wrong-type" => Some(Expect::IoPorts(0x80, 1, rights::READ)),
                        "dead-endpoint" => Some(Expect::Endpoint("victim", send)),
                        "queue-probe" => Some(Expect::Endpoint("qsink", send)),
                        "queue-sink" => {
                            l.push((2, Expect::AuditRead));
                            l.push((3, Expect::ProcessControl));
                            Some(Expect::Endpoint("qsink", receive))
                        }
                        "forged-handle" | "bad-lease" | "write-text" | "exec-stack" => None,
                        // Slot 1 a read-only MMIO region, slot 2 a DMA pool; `mmio-on-ram`
                        // points slot 1 at RAM on purpose (the kernel refuses its launch).
                        "region-probe" if p.name == "mmio-on-ram" => {
                            Some(Expect::Mmio(0x10_0000, 1, rights::READ | rights::WRITE))
                        }
                        // The ECAM window, which the kernel must refuse as plain MMIO.
                        "region-probe" if p.name == "mmio-ecam" => {
                            Some(Expect::Mmio(0xb000_0000, 1, rights::READ))
                        }
                        "crash-blk" => Some(Expect::Endpoint("block", send)),
                        "crash-ip" => Some(Expect::Endpoint("ip", send)),
                        "crash-transport" => Some(Expect::Endpoint("transport", send)),
                        "rogue-driver" => {
                            l.push((2, Expect::Device(0x8086, "bar")));
                            Some(Expect::Device(0x8086, "config"))
                        }
                        "region-probe" => {
                            l.push((2, Expect::DmaPool(4)));
                            Some(Expect::Mmio(0xfed0_0000, 1, rights::READ))
                        }
                        other => panic!("{name}: no slot layout known for attack {other}"),
                    };
                    l.extend(target.map(|t| (attack::slots::TARGET, t)));
                    l
                }
                other => panic!("{name}: no slot layout known for {other}"),
            };
            for (slot, want) in &layout {
                let cap = p.caps.get(usize::from(*slot));
                assert!(
                    cap.is_some_and(|c| matches(&system, c, want)),
                    "{name}: {} slot {slot}: expected {want:?}, manifest has {cap:?}",
                    p.name
                );
            }
            if p.package != "brainix-attacks" {
                assert_eq!(
                    p.caps.len(),
                    layout.len(),
                    "{name}: {} has extra capabilities",
                    p.name
                );
            }
        }
    }
}

#[test]
fn toml_syntax_errors_name_the_line() {
    let src = replace("priority = 2", "priority = = 2");
    refused(
        &src,
        line(GOOD, "priority = 2"),
        &["not a valid system manifest"],
    );
}

#[test]
fn unknown_fields_are_refused() {
    let src = replace(
        "stack_pages = 4\nstart",
        "stack_pages = 4\nheap_pages = 9\nstart",
    );
    refused(
        &src,
        line(&src, "heap_pages"),
        &["unknown field", "heap_pages"],
    );
}

#[test]
fn duplicate_process_names() {
    let src = format!("{GOOD}{}", extra_process("server"));
    refused(
        &src,
        src.lines().count() - 4,
        &["process \"server\" is declared twice", "unique"],
    );
}

#[test]
fn duplicate_endpoint_names() {
    let src = replace(
        "[[endpoint]]\nname = \"svc\"\n",
        "[[endpoint]]\nname = \"svc\"\n[[endpoint]]\nname = \"svc\"\n",
    );
    refused(&src, 6, &["endpoint \"svc\" is declared twice"]);
}

#[test]
fn undeclared_endpoints() {
    let src = replace(
        "endpoint = \"svc\", rights = [\"send\"]",
        "endpoint = \"nope\", rights = [\"send\"]",
    );
    refused(
        &src,
        line(&src, "nope"),
        &[
            "endpoint \"nope\" is not declared",
            "expected an [[endpoint]]",
        ],
    );
}

#[test]
fn an_endpoint_without_a_receiver() {
    let src = replace("rights = [\"receive\"]", "rights = [\"send\"]");
    refused(
        &src,
        line(GOOD, "name = \"svc\""),
        &["has no receiver", "exactly one"],
    );
}

#[test]
fn two_senders_with_one_badge() {
    // The server (pid 0) sends too, with the default badge 0; the client claims 0 as well.
    let src = replace("rights = [\"receive\"]", "rights = [\"receive\", \"send\"]");
    let src = src.replacen("badge = 7", "badge = 0", 1);
    refused(
        &src,
        line(&src, "badge = 0"),
        &[
            "sends on endpoint \"svc\" with badge 0, as \"server\" does",
            "a badge of its own",
        ],
    );
    let src = replace("badge = 7", "badge = 1");
    assert!(check(file(), &src).is_ok(), "different badges are fine");
}

#[test]
fn an_endpoint_with_two_receivers() {
    let src = replace(
        "rights = [\"send\"], badge = 7",
        "rights = [\"send\", \"receive\"]",
    );
    refused(
        &src,
        line(GOOD, "name = \"svc\""),
        &["received by \"server\" and \"client\"", "exactly one"],
    );
}

#[test]
fn rights_that_do_not_fit_the_type() {
    let src = replace("rights = [\"send\"]", "rights = [\"write\"]");
    refused(
        &src,
        line(&src, "rights = [\"write\"]"),
        &["\"write\" is not a right of endpoint capabilities", "send"],
    );
    let src = replace(
        "rights = [\"read\", \"write\"]",
        "rights = [\"read\", \"receive\"]",
    );
    refused(
        &src,
        line(&src, "\"read\", \"receive\"]"),
        &["not a right of io-ports capabilities"],
    );
    let src = replace("rights = [\"read\", \"write\"]", "rights = []");
    refused(
        &src,
        line(&src, "rights = []"),
        &["need at least one right"],
    );
}

#[test]
fn fields_that_do_not_fit_the_type_or_are_missing() {
    let src = replace("{ type = \"log\" }", "{ type = \"log\", line = 3 }");
    refused(
        &src,
        line(&src, "line = 3"),
        &["log capabilities take no \"line\""],
    );
    let src = replace(
        "{ type = \"irq\", line = 4, bit = 0 }",
        "{ type = \"irq\", line = 4 }",
    );
    refused(
        &src,
        line(&src, "line = 4 }"),
        &["irq capabilities need \"bit\""],
    );
    let src = replace("{ type = \"audit-read\" }", "{ type = \"spawn\" }");
    refused(
        &src,
        line(&src, "spawn"),
        &["unknown capability type \"spawn\"", "expected one of"],
    );
}

#[test]
fn priority_out_of_range() {
    let src = replace("priority = 2", "priority = 8");
    refused(
        &src,
        line(GOOD, "priority = 2"),
        &["priority = 8 is out of range", "expected 0 to 7"],
    );
    let src = replace("priority = 2", "priority = -1");
    refused(
        &src,
        line(GOOD, "priority = 2"),
        &["priority = -1 is out of range"],
    );
}

#[test]
fn stack_and_memory_out_of_range() {
    let src = replace("stack_pages = 4\nstart", "stack_pages = 0\nstart");
    refused(
        &src,
        line(&src, "stack_pages = 0"),
        &["stack_pages = 0 is out of range", "expected 1 to 256"],
    );
    let src = replace(
        "memory_pages = 64\nstack_pages = 4\nstart",
        "memory_pages = 0\nstack_pages = 4\nstart",
    );
    refused(
        &src,
        line(&src, "memory_pages = 0"),
        &["memory_pages = 0 is out of range"],
    );
}

#[test]
fn too_many_processes() {
    let mut src = GOOD.to_string();
    for i in 0..limits::MAX_PROCESSES - 1 {
        src += &extra_process(&format!("p{i}"));
    }
    // The process after the limit is the one refused.
    let first_extra = format!("name = \"p{}\"", limits::MAX_PROCESSES - 2);
    let limit = format!("at most {} processes", limits::MAX_PROCESSES);
    refused(
        &src,
        line(&src, &first_extra) - 1,
        &["one too many", &limit],
    );
}

#[test]
fn too_many_capabilities() {
    let caps = "  { type = \"log\" },\n".repeat(limits::MAX_CAPS - 3);
    let src = replace(
        "  { type = \"log\" },\n",
        &format!("  {{ type = \"log\" }},\n{caps}"),
    );
    // The complaint stands on the client's `caps = [` line.
    refused(
        &src,
        line(&src, "bin = \"client-bin\"") + 6,
        &[
            &format!("has {} capabilities", limits::MAX_CAPS + 1),
            &format!("at most {}", limits::MAX_CAPS),
        ],
    );
}

#[test]
fn too_many_endpoints() {
    let mut extra = String::new();
    let mut caps = String::new();
    for i in 0..limits::MAX_ENDPOINTS {
        extra += &format!("[[endpoint]]\nname = \"e{i}\"\n");
        caps +=
            &format!("  {{ type = \"endpoint\", endpoint = \"e{i}\", rights = [\"receive\"] }},\n");
    }
    let src = replace(
        "[[process]]\nname = \"server\"",
        &format!("{extra}\n[[process]]\nname = \"server\""),
    );
    let src = src.replacen(
        "  { type = \"irq\"",
        &format!("{caps}  {{ type = \"irq\""),
        1,
    );
    refused(
        &src,
        line(&src, "name = \"e63\"") - 1,
        &["one too many", "at most 64 endpoints"],
    );
}

#[test]
fn irq_lines_and_bits() {
    let src = replace("line = 4, bit = 0", "line = 48, bit = 0");
    refused(
        &src,
        line(&src, "line = 48"),
        &["line = 48 is out of range", "expected 0 to 47"],
    );
    let src = replace("line = 4, bit = 0", "line = 4, bit = 31");
    refused(
        &src,
        line(&src, "bit = 31"),
        &["bit = 31 is out of range", "expected 0 to 30"],
    );
    let two = "{ type = \"irq\", line = 4, bit = 0 },\n  { type = \"irq\", line = 4, bit = 0 },";
    let src = replace("{ type = \"irq\", line = 4, bit = 0 },", two);
    let at = line(&src, "line = 4") + 1;
    refused(&src, at, &["holds IRQ line 4 twice"]);
    let two = "{ type = \"irq\", line = 4, bit = 0 },\n  { type = \"irq\", line = 3, bit = 0 },";
    let src = replace("{ type = \"irq\", line = 4, bit = 0 },", two);
    refused(
        &src,
        line(&src, "line = 3"),
        &["uses notification bit 0 twice"],
    );
    let src = replace(
        "{ type = \"log\" }",
        "{ type = \"irq\", line = 4, bit = 1 }",
    );
    refused(
        &src,
        line(&src, "bit = 1"),
        &["IRQ line 4 is given to both \"server\" and \"client\""],
    );
}

#[test]
fn process_control_targets() {
    let src = replace("process = \"server\"", "process = \"ghost\"");
    refused(
        &src,
        line(&src, "ghost"),
        &["process-control of \"ghost\", which is not declared"],
    );
    let src = replace("process = \"server\"", "process = \"client\"");
    refused(
        &src,
        line(&src, "process = \"client\""),
        &["given control of itself"],
    );
}

#[test]
fn names_and_port_ranges() {
    let long = "x".repeat(33);
    let src = replace("name = \"client\"", &format!("name = \"{long}\""));
    refused(
        &src,
        line(&src, &long),
        &["is 33 bytes", "expected 1 to 32"],
    );
    let src = replace("name = \"client\"", "name = \"cli ent\"");
    refused(&src, line(&src, "cli ent"), &["other characters"]);
    let src = replace("base = 0x3f8, count = 8", "base = 0xfffc, count = 8");
    refused(&src, line(&src, "0xfffc"), &["run past 0xffff"]);
}

/// A minimal ELF with `(vaddr, mem_len, flags)` segments and entry at the first one.
fn elf(segments: &[(u64, u64, u32)]) -> Vec<u8> {
    let mut d = vec![0u8; 64 + 56 * segments.len()];
    d[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
    d[16..18].copy_from_slice(&2u16.to_le_bytes());
    d[18..20].copy_from_slice(&62u16.to_le_bytes());
    d[24..32].copy_from_slice(&segments[0].0.to_le_bytes());
    d[32..40].copy_from_slice(&64u64.to_le_bytes());
    d[54..56].copy_from_slice(&56u16.to_le_bytes());
    d[56..58].copy_from_slice(&(segments.len() as u16).to_le_bytes());
    for (i, &(vaddr, len, flags)) in segments.iter().enumerate() {
        let o = 64 + 56 * i;
        d[o..o + 4].copy_from_slice(&1u32.to_le_bytes());
        d[o + 4..o + 8].copy_from_slice(&flags.to_le_bytes());
        d[o + 16..o + 24].copy_from_slice(&vaddr.to_le_bytes());
        d[o + 40..o + 48].copy_from_slice(&len.to_le_bytes());
    }
    d
}

const RX: u32 = 5;
const RW: u32 = 6;
const RWX: u32 = 7;

#[test]
fn images_that_fit_pass() {
    let system = check(file(), GOOD).unwrap();
    let small = elf(&[(0x40_0000, 0x3000, RX), (0x40_3000, 0x2000, RW)]);
    check_images(&system, &|_| Ok(small.clone())).unwrap();
}

#[test]
fn a_budget_too_small_for_the_image() {
    let src = replace(
        "memory_pages = 64\nstack_pages = 4\nstart",
        "memory_pages = 20\nstack_pages = 4\nstart",
    );
    let system = check(file(), &src).unwrap();
    // 8 image pages + 4 stack + 5 fixed + 6 tables = 23.
    let image = elf(&[(0x40_0000, 0x3000, RX), (0x40_3000, 0x5000, RW)]);
    let errors = check_images(&system, &|_| Ok(image.clone())).unwrap_err().0;
    assert_eq!(errors.len(), 1, "{}", Errors(errors));
    assert_eq!(errors[0].line, line(&src, "memory_pages = 20"));
    assert!(
        errors[0].message.contains(
            "memory_pages = 20 is too small; expected at least 23 (8 for the image, 4 for the stack, 0 for DMA pools, 11 for page tables)"
        ),
        "{}",
        errors[0]
    );
}

#[test]
fn images_that_break_w_xor_x_or_cannot_be_read_are_refused() {
    let system = check(file(), GOOD).unwrap();
    let wx = elf(&[(0x40_0000, 0x1000, RWX)]);
    let errors = check_images(&system, &|_| Ok(wx.clone())).unwrap_err().0;
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[0].line, line(GOOD, "program = \"p\""));
    assert!(
        errors[0]
            .message
            .contains("is refused: segment at 0x400000 is writable and executable"),
        "{}",
        errors[0]
    );
    let errors = check_images(&system, &|p| Err(format!("no binary {}", p.bin)))
        .unwrap_err()
        .0;
    assert!(
        errors[1]
            .message
            .contains("process \"client\": no binary client-bin"),
        "{}",
        errors[1]
    );
}

#[test]
fn programs_must_be_workspace_packages_with_that_binary() {
    let system = check(file(), GOOD).unwrap();
    let mut catalog = Catalog::new();
    catalog.insert("p".into(), vec!["p".into(), "client-bin".into()]);
    check_programs(&system, &catalog).unwrap();
    catalog.insert("p".into(), vec!["p".into()]);
    let errors = check_programs(&system, &catalog).unwrap_err().0;
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].line, line(GOOD, "bin = \"client-bin\"") - 1);
    assert!(
        errors[0]
            .message
            .contains("package \"p\" has no binary \"client-bin\""),
        "{}",
        errors[0]
    );
    let errors = check_programs(&system, &Catalog::new()).unwrap_err().0;
    assert!(
        errors[0]
            .message
            .contains("program \"p\" is not a package of the workspace"),
        "{}",
        errors[0]
    );
}

#[test]
fn mmio_regions_and_dma_pools() {
    let with = |caps: &str| {
        replace(
            "  { type = \"log\" },\n",
            &format!("  {{ type = \"log\" }},\n  {caps}\n"),
        )
    };
    let src = with(
        "{ type = \"mmio\", base = 0xfed00000, pages = 1, rights = [\"read\"] }, { type = \"dma-pool\", pages = 8 },",
    );
    let system = check(file(), &src).unwrap();
    let client = &system.processes[1];
    assert!(client.caps.contains(&Cap::Mmio {
        base: 0xfed0_0000,
        pages: 1,
        rights: rights::READ
    }));
    assert!(client.caps.contains(&Cap::DmaPool { pages: 8 }));
    let src = with("{ type = \"mmio\", base = 0xfed00010, pages = 1, rights = [\"read\"] },");
    refused(&src, line(&src, "0xfed00010"), &["not page aligned"]);
    let src = with("{ type = \"mmio\", base = 0xfed00000, pages = 0, rights = [\"read\"] },");
    refused(&src, line(&src, "pages = 0"), &["pages"]);
    let src = with("{ type = \"dma-pool\", pages = 300000 },");
    refused(&src, line(&src, "300000"), &["pages"]);
    let src = with("{ type = \"dma-pool\" },");
    refused(&src, line(&src, "dma-pool"), &["need \"pages\""]);
    let src = with("{ type = \"mmio\", base = 0xfed00000, pages = 1, rights = [\"send\"] },");
    refused(
        &src,
        line(&src, "type = \"mmio\""),
        &["not a right of mmio"],
    );
}

#[test]
fn dma_pools_count_against_the_budget() {
    let src = replace(
        "  { type = \"log\" },\n",
        "  { type = \"log\" },\n  { type = \"dma-pool\", pages = 60 },\n",
    );
    let system = check(file(), &src).unwrap();
    let small = elf(&[(0x40_0000, 0x3000, RX), (0x40_3000, 0x2000, RW)]);
    let errors = check_images(&system, &|_| Ok(small.clone())).unwrap_err().0;
    assert_eq!(errors.len(), 1, "{}", Errors(errors));
    assert!(
        errors[0].message.contains("60 for DMA pools"),
        "{}",
        errors[0]
    );
}

#[test]
fn only_the_shell_may_read_the_console() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../system");
    for name in ["default.toml", "test.toml"] {
        let path = root.join(name);
        let system = check(&path, &std::fs::read_to_string(&path).unwrap()).unwrap();
        let console = system
            .endpoints
            .iter()
            .position(|e| e == "console")
            .unwrap();
        for p in &system.processes {
            for cap in &p.caps {
                if let Cap::Endpoint {
                    endpoint, badge, ..
                } = *cap
                    && usize::from(endpoint) == console
                {
                    let reads = badge & brainix_proto::console::READER != 0;
                    assert_eq!(
                        reads,
                        p.package == "brainix-shell",
                        "{name}: {} reader bit {reads}",
                        p.name
                    );
                }
            }
        }
    }
}

#[test]
fn report_capabilities_name_one_well_formed_check_each() {
    let with = |caps: &str| {
        replace(
            "  { type = \"log\" },\n",
            &format!("  {{ type = \"log\" }},\n  {caps}\n"),
        )
    };
    let src = with(
        "{ type = \"report\", check = \"auth.forged-handle\" }, { type = \"report\", check = \"ipc.x\" },",
    );
    let system = check(file(), &src).unwrap();
    assert_eq!(system.reports, ["auth.forged-handle", "ipc.x"]);
    assert!(system.processes[1].caps.contains(&Cap::Report { index: 1 }));
    let text = generate(
        &system,
        &[PathBuf::from("/a/server"), PathBuf::from("/a/client")],
    );
    assert!(text.contains("crate::manifest::CapSpec::Report { index: 0 }, // slot 2"));
    assert!(text.contains("reports: &[\"auth.forged-handle\", \"ipc.x\"],"));

    let src = with("{ type = \"report\", check = \"Auth_X\" },");
    refused(
        &src,
        line(&src, "Auth_X"),
        &["not 1 to 48", "serial protocol"],
    );
    let long = "a".repeat(49);
    let src = with(&format!("{{ type = \"report\", check = \"{long}\" }},"));
    refused(&src, line(&src, &long), &["not 1 to 48"]);
    let src = with("{ type = \"report\", check = \"mem.wx\" },");
    refused(&src, line(&src, "mem.wx"), &["the kernel reports itself"]);
    let src =
        with("{ type = \"report\", check = \"a.b\" }, { type = \"report\", check = \"a.b\" },");
    refused(
        &src,
        line(&src, "a.b"),
        &["already has a report capability"],
    );
    let src = with("{ type = \"report\" },");
    refused(&src, line(&src, "type = \"report\""), &["need \"check\""]);
    let src = with("{ type = \"log\", check = \"a.b\" },");
    refused(&src, line(&src, "check = \"a.b\""), &["take no \"check\""]);
    let many: String = (0..=limits::MAX_REPORTS)
        .map(|i| format!("{{ type = \"report\", check = \"c{i}\" }}, "))
        .collect();
    let src = with(&many);
    refused(&src, line(&src, "c64"), &["one report capability too many"]);
}

#[test]
fn only_the_shell_may_decide_on_assist_proposals() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../system");
    for name in ["default.toml", "test.toml"] {
        let path = root.join(name);
        let system = check(&path, &std::fs::read_to_string(&path).unwrap()).unwrap();
        let consent = system
            .endpoints
            .iter()
            .position(|e| e == "consent")
            .unwrap();
        let mut trusted = Vec::new();
        for p in &system.processes {
            for cap in &p.caps {
                if let Cap::Endpoint {
                    endpoint, badge, ..
                } = *cap
                    && usize::from(endpoint) == consent
                    && badge & brainix_proto::consent::TRUSTED != 0
                {
                    trusted.push(p.name.as_str());
                }
            }
        }
        assert_eq!(trusted, ["shell"], "{name}: holders of the trusted bit");
    }
}

/// `GOOD` plus a device, driven by a third process whose caps are `caps`.
fn with_device(caps: &str, extra: &str) -> String {
    format!(
        "{GOOD}\n[[device]]\nname = \"blk0\"\nvendor = 0x1af4\ndevice = 0x1042\nalt_device = 0x1001\n\
         \n[[process]]\nname = \"drv\"\nprogram = \"p\"\npriority = 1\nmemory_pages = 64\nstack_pages = 1\n\
         caps = [\n{caps}\n]\n{extra}"
    )
}

#[test]
fn device_capabilities_resolve_and_generate() {
    use brainix_kernel::manifest::{DevicePart, PciMatch};
    let src = with_device(
        "  { type = \"device-config\", device = \"blk0\", rights = [\"read\", \"write\"] },\n  \
         { type = \"device-bar\", device = \"blk0\", bar = 4, rights = [\"read\"] },\n  \
         { type = \"device-irq\", device = \"blk0\", bit = 2 },",
        "",
    );
    let system = check(file(), &src).unwrap();
    let pci = PciMatch {
        vendor: 0x1af4,
        device: 0x1042,
        alt_device: 0x1001,
        index: 0,
    };
    assert_eq!(
        system.processes[2].caps,
        [
            Cap::Device {
                pci,
                part: DevicePart::Config {
                    rights: rights::READ | rights::WRITE
                }
            },
            Cap::Device {
                pci,
                part: DevicePart::Bar {
                    bar: 4,
                    rights: rights::READ
                }
            },
            Cap::Device {
                pci,
                part: DevicePart::Irq { bit: 2 }
            },
        ]
    );
    let text = generate(&system, &[PathBuf::new(), PathBuf::new(), PathBuf::new()]);
    assert!(text.contains(
        "Device { pci: crate::manifest::PciMatch { vendor: 0x1af4, device: 0x1042, alt_device: 0x1001, index: 0 }, part: crate::manifest::DevicePart::Bar { bar: 4, rights: brainix_abi::rights::READ } }"
    ), "{text}");
}

#[test]
fn device_capabilities_are_checked() {
    let src = with_device(
        "  { type = \"device-bar\", device = \"nvme0\", bar = 0, rights = [\"read\"] },",
        "",
    );
    refused(
        &src,
        line(&src, "nvme0"),
        &["device \"nvme0\" is not declared"],
    );
    let src = with_device(
        "  { type = \"device-bar\", device = \"blk0\", bar = 6, rights = [\"read\"] },",
        "",
    );
    refused(
        &src,
        line(&src, "bar = 6"),
        &["bar = 6 is out of range; expected 0 to 5"],
    );
    let src = with_device("  { type = \"device-irq\", device = \"blk0\" },", "");
    refused(&src, line(&src, "device-irq"), &["need \"bit\""]);
    // Two servers for one device.
    let src = with_device(
        "  { type = \"device-irq\", device = \"blk0\", bit = 0 },",
        "\n[[process]]\nname = \"drv2\"\nprogram = \"p\"\npriority = 1\nmemory_pages = 64\nstack_pages = 1\n\
         caps = [ { type = \"device-config\", device = \"blk0\", rights = [\"read\"] } ]\n",
    );
    refused(
        &src,
        line(&src, "name = \"drv2\"") + 5,
        &["device \"blk0\" is given to both \"drv\" and \"drv2\""],
    );
    // A device-irq bit that another IRQ of the process uses.
    let src = with_device(
        "  { type = \"device-irq\", device = \"blk0\", bit = 3 },\n  { type = \"irq\", line = 9, bit = 3 },",
        "",
    );
    refused(&src, line(&src, "line = 9"), &["notification bit 3 twice"]);
    let src = format!("{GOOD}\n[[device]]\nname = \"x\"\nvendor = 0xffff\ndevice = 1\n");
    refused(
        &src,
        line(&src, "vendor = 0xffff"),
        &["vendor = 65535 is out of range"],
    );
}

/// GOOD with the server given an interface and the client socket capabilities on `svc`.
fn with_sockets(client_caps: &str) -> String {
    replace(
        "caps = [\n  { type = \"endpoint\", endpoint = \"svc\", rights = [\"receive\"] },",
        "interface = { address = \"10.0.2.15/24\", gateway = \"10.0.2.2\" }\ncaps = [\n  { type = \"endpoint\", endpoint = \"svc\", rights = [\"receive\"] },",
    )
    .replacen(
        "  { type = \"endpoint\", endpoint = \"svc\", rights = [\"send\"], badge = 7 },",
        client_caps,
        1,
    )
}

const TCP_SOCKET: &str = "  { type = \"socket\", endpoint = \"svc\", protocol = \"tcp\", local_ports = \"7\", remote = \"10.0.2.0/24\", remote_ports = \"1024-65535\" },";
const UDP_SOCKET: &str = "  { type = \"socket\", endpoint = \"svc\", protocol = \"udp\", local_ports = \"49152-49407\", remote = \"0.0.0.0/0\", remote_ports = \"53\" },";

#[test]
fn socket_grants_become_badges_and_go_to_the_receivers_configuration() {
    use brainix_proto::transport::{PortRange, Protocol, grant_badge};
    let src = with_sockets(&format!("{TCP_SOCKET}\n{UDP_SOCKET}"));
    let system = check(file(), &src).unwrap();
    let [server, client] = &system.processes[..] else {
        panic!()
    };
    let send = |i| Cap::Endpoint {
        endpoint: 0,
        rights: rights::SEND,
        badge: grant_badge(i),
    };
    assert_eq!(client.caps[..2], [send(0), send(1)]);
    assert!(client.config.is_empty());
    assert_eq!(
        server.config,
        [
            Record::Interface(brainix_proto::ip::Config {
                address: [10, 0, 2, 15],
                prefix: 24,
                gateway: [10, 0, 2, 2]
            }),
            Record::Grant {
                index: 0,
                grant: Grant {
                    protocol: Protocol::Tcp,
                    local_ports: PortRange { first: 7, last: 7 },
                    remote: [10, 0, 2, 0],
                    prefix: 24,
                    remote_ports: PortRange {
                        first: 1024,
                        last: 65535
                    },
                }
            },
            Record::Grant {
                index: 1,
                grant: Grant {
                    protocol: Protocol::Udp,
                    local_ports: PortRange {
                        first: 49152,
                        last: 49407
                    },
                    remote: [0; 4],
                    prefix: 0,
                    remote_ports: PortRange {
                        first: 53,
                        last: 53
                    },
                }
            },
        ]
    );
}

#[test]
fn a_bad_socket_or_interface_is_refused_with_what_was_expected() {
    let cases = [
        (
            TCP_SOCKET.replace("\"tcp\"", "\"sctp\""),
            &["\"sctp\"", "\"udp\" or \"tcp\""][..],
        ),
        (
            TCP_SOCKET.replace("\"7\"", "\"9-7\""),
            &["local_ports", "\"9-7\""],
        ),
        (
            TCP_SOCKET.replace("\"1024-65535\"", "\"0-10\""),
            &["remote_ports", "1 to 65535"],
        ),
        (
            TCP_SOCKET.replace("10.0.2.0/24", "10.0.2.5/24"),
            &["host bits"],
        ),
        (
            TCP_SOCKET.replace("10.0.2.0/24", "10.0.2.0/40"),
            &["not an IPv4 network"],
        ),
        (
            TCP_SOCKET.replace(", remote_ports = \"1024-65535\"", ""),
            &["need \"remote_ports\""],
        ),
        (
            TCP_SOCKET.replace("\"svc\"", "\"nowhere\""),
            &["\"nowhere\" is not declared"],
        ),
        (
            TCP_SOCKET.replace("local_ports", "badge = 3, local_ports"),
            &["take no \"badge\""],
        ),
    ];
    for (cap, words) in cases {
        let src = with_sockets(&cap);
        refused(&src, line(&src, "type = \"socket\""), words);
    }
    for (from, to, words) in [
        (
            "10.0.2.15/24",
            "10.0.2.15",
            &["not an IPv4 address with its prefix"][..],
        ),
        (
            "10.0.2.15/24",
            "10.0.2.0/24",
            &["network's own or broadcast"],
        ),
        ("\"10.0.2.2\" }", "\"10.0.3.2\" }", &["not another host"]),
        ("\"10.0.2.2\" }", "\"10.0.2.15\" }", &["not another host"]),
        (
            "\"10.0.2.2\" }",
            "\"10.0.2.2\", mtu = 9000 }",
            &["unknown field"],
        ),
    ] {
        let src = with_sockets(TCP_SOCKET).replacen(from, to, 1);
        refused(&src, line(&src, "interface ="), words);
    }
}

#[test]
fn an_endpoint_that_serves_sockets_takes_no_explicit_badge() {
    // The grant's own badge, written by hand on another capability, would claim the grant.
    let forged = format!(
        "{TCP_SOCKET}\n  {{ type = \"endpoint\", endpoint = \"svc\", rights = [\"send\"], badge = {} }},",
        brainix_proto::transport::grant_badge(0)
    );
    let src = with_sockets(&forged);
    refused(
        &src,
        line(&src, "badge = "),
        &["serves sockets", "no explicit badge"],
    );
}

#[test]
fn too_many_grants_on_one_endpoint_are_refused() {
    let many: Vec<String> = (0..=MAX_GRANTS)
        .map(|i| TCP_SOCKET.replace("\"7\"", &format!("\"{}\"", 100 + i)))
        .collect();
    // Spread over processes: one process holds at most MAX_CAPS capabilities.
    let mut src = with_sockets("");
    for (i, chunk) in many.chunks(8).enumerate() {
        src.push_str(&format!(
            "\n[[process]]\nname = \"c{i}\"\nprogram = \"p\"\npriority = 3\nmemory_pages = 64\nstack_pages = 1\ncaps = [\n{}\n]\n",
            chunk.join("\n")
        ));
    }
    let last = src
        .lines()
        .filter(|l| l.contains("type = \"socket\""))
        .count();
    assert_eq!(last, MAX_GRANTS + 1);
    let at = src
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains("type = \"socket\""))
        .last()
        .unwrap()
        .0
        + 1;
    refused(&src, at, &["socket grants", "at most 32"]);
}

#[test]
fn configuration_is_written_into_the_programs_block_and_only_there() {
    use brainix_proto::config;
    let system = check(file(), &with_sockets(TCP_SOCKET)).unwrap();
    let server = &system.processes[0];
    let mut program = vec![0x90u8; 4096];
    let at = 1000;
    program[at..at + config::BLOCK].copy_from_slice(config::block());
    let image = configure(server, &program).unwrap().unwrap();
    assert_eq!(image.len(), program.len());
    assert_eq!(image[..at], program[..at]);
    assert_eq!(image[at + config::BLOCK..], program[at + config::BLOCK..]);
    let records: Vec<Record> = config::parse(&image[at..at + config::BLOCK])
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(records, server.config);
    // A process without configuration runs the program as built.
    assert_eq!(configure(&system.processes[1], &program), Ok(None));
    // No block, two blocks: refused, naming the process and the program.
    let none = configure(server, &[0u8; 4096]).unwrap_err();
    assert!(
        none.contains("\"server\"") && none.contains("no configuration block"),
        "{none}"
    );
    let mut two = program.clone();
    two.extend_from_slice(config::block());
    let err = configure(server, &two).unwrap_err();
    assert!(err.contains("2 configuration blocks"), "{err}");
}
