//! Parsing a typed line into a command: pure, tested on the host.

use core::fmt;

/// The help text, one command a line.
pub const HELP: &str = "\
commands:
  help                  this list
  ps                    every process: pid, name, state, priority, pages, generation, last exit
  caps <pid>            the capability table of one process
  mem                   frame pool and table statistics
  uptime                time since boot
  echo <text>           print the text
  ipc-bench             time 10000 null system calls and 10000 call/reply round trips
  kill <pid>            ask the supervisor to stop a process
  start <name-or-pid>   ask the supervisor to start (or restart) a process
  audit                 ask the auditor for its report of the whole system
  approve <id>          consent to an assist proposal shown on this console (runs it, once)
  deny <id>             refuse an assist proposal
  fuzz <calls> [seed]   run seeded random system calls in the fuzzer (test system), then check
                        that every invariant still holds
  devices               the PCI functions the kernel found, and which server each is bound to
  ls                    the files on the disk, with their sizes
  cat <file>            print a file
  write <file> <text>   make the file hold the text and a newline
  rm <file>             remove a file
  stat <file>           a file's size and blocks
  df                    blocks and files in use on the disk
  fs-bench <file>       read the file through the filesystem, then inside it (one hop fewer): MiB/s
  random <bytes>        bytes (1 to 256) from the entropy server, in hex
  ping <a.b.c.d>        three ICMP echo requests through the IP server, with round-trip times
  netstat               the IP server's frame counters and drops by reason
";

/// A process named on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target<'a> {
    /// By pid.
    Pid(u64),
    /// By name, looked up in the process table.
    Name(&'a str),
}

/// One command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// An empty line: just prompt again.
    Nothing,
    /// `help`.
    Help,
    /// `ps`.
    Ps,
    /// `caps <pid>`.
    Caps(u64),
    /// `mem`.
    Mem,
    /// `uptime`.
    Uptime,
    /// `echo <text>`: the text after the command and one blank, as typed.
    Echo(&'a str),
    /// `ipc-bench`.
    IpcBench,
    /// `kill <pid>`.
    Kill(u64),
    /// `start <name-or-pid>`.
    Start(Target<'a>),
    /// `audit`.
    Audit,
    /// `approve <id>` (true) or `deny <id>` (false).
    Decide {
        /// The proposal.
        id: u64,
        /// Approve or deny.
        approve: bool,
    },
    /// `fuzz <calls> [seed]`: no seed means one from the time-stamp counter.
    Fuzz {
        /// Calls to make.
        calls: u64,
        /// The seed, to replay a run.
        seed: Option<u64>,
    },
    /// `devices`.
    Devices,
    /// `ls`.
    Ls,
    /// `cat <file>`.
    Cat(&'a str),
    /// `write <file> <text>`: the text after the name and one blank, as typed.
    Write(&'a str, &'a str),
    /// `rm <file>`.
    Rm(&'a str),
    /// `stat <file>`.
    Stat(&'a str),
    /// `df`.
    Df,
    /// `fs-bench <file>`.
    FsBench(&'a str),
    /// `random <bytes>`.
    Random(u64),
    /// `ping <a.b.c.d>`.
    Ping([u8; 4]),
    /// `netstat`.
    Netstat,
}

/// Why a line is not a command. Each message says what was wrong and what was expected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError<'a> {
    /// Bytes that are not text (the console only passes ASCII, so this is a client bug).
    NotText,
    /// No such command.
    Unknown(&'a str),
    /// The command needs an argument.
    Missing {
        /// Command name.
        command: &'static str,
        /// Its usage.
        usage: &'static str,
    },
    /// An argument that should be a number is not.
    NotANumber {
        /// The argument.
        arg: &'a str,
        /// The command's usage.
        usage: &'static str,
    },
    /// An argument that should be an IPv4 address is not.
    NotAnAddress {
        /// The argument.
        arg: &'a str,
        /// The command's usage.
        usage: &'static str,
    },
    /// More arguments than the command takes.
    TooMany {
        /// The first extra argument.
        extra: &'a str,
        /// The command's usage.
        usage: &'static str,
    },
}

impl fmt::Display for ParseError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::NotText => write!(f, "error: the line is not text"),
            ParseError::Unknown(c) => {
                write!(f, "error: unknown command '{c}' (type 'help' for the list)")
            }
            ParseError::Missing { command, usage } => {
                write!(f, "error: {command} needs an argument (usage: {usage})")
            }
            ParseError::NotANumber { arg, usage } => {
                write!(f, "error: '{arg}' is not a number (usage: {usage})")
            }
            ParseError::NotAnAddress { arg, usage } => {
                write!(f, "error: '{arg}' is not an IPv4 address (usage: {usage})")
            }
            ParseError::TooMany { extra, usage } => {
                write!(f, "error: unexpected '{extra}' (usage: {usage})")
            }
        }
    }
}

/// Parses one typed line.
pub fn parse(line: &[u8]) -> Result<Command<'_>, ParseError<'_>> {
    let line = core::str::from_utf8(line).map_err(|_| ParseError::NotText)?;
    let line = line.trim_matches(' ');
    let (name, rest) = line.split_once(' ').unwrap_or((line, ""));
    let mut args = rest.split(' ').filter(|a| !a.is_empty());
    Ok(match name {
        "" => Command::Nothing,
        "help" => none(&mut args, "help").map(|()| Command::Help)?,
        "ps" => none(&mut args, "ps").map(|()| Command::Ps)?,
        "mem" => none(&mut args, "mem").map(|()| Command::Mem)?,
        "uptime" => none(&mut args, "uptime").map(|()| Command::Uptime)?,
        "ipc-bench" => none(&mut args, "ipc-bench").map(|()| Command::IpcBench)?,
        "audit" => none(&mut args, "audit").map(|()| Command::Audit)?,
        "approve" => Command::Decide {
            id: one_number(&mut args, "approve", "approve <id>")?,
            approve: true,
        },
        "deny" => Command::Decide {
            id: one_number(&mut args, "deny", "deny <id>")?,
            approve: false,
        },
        "fuzz" => {
            let usage = "fuzz <calls> [seed]";
            let arg = args.next().ok_or(ParseError::Missing {
                command: "fuzz",
                usage,
            })?;
            let calls = number(arg).ok_or(ParseError::NotANumber { arg, usage })?;
            let seed = match args.next() {
                Some(arg) => Some(number(arg).ok_or(ParseError::NotANumber { arg, usage })?),
                None => None,
            };
            none(&mut args, usage)?;
            Command::Fuzz { calls, seed }
        }
        "echo" => Command::Echo(rest),
        "devices" => none(&mut args, "devices").map(|()| Command::Devices)?,
        "ls" => none(&mut args, "ls").map(|()| Command::Ls)?,
        "df" => none(&mut args, "df").map(|()| Command::Df)?,
        "cat" => Command::Cat(one(&mut args, "cat", "cat <file>")?),
        "rm" => Command::Rm(one(&mut args, "rm", "rm <file>")?),
        "stat" => Command::Stat(one(&mut args, "stat", "stat <file>")?),
        "fs-bench" => Command::FsBench(one(&mut args, "fs-bench", "fs-bench <file>")?),
        "random" => Command::Random(one_number(&mut args, "random", "random <bytes>")?),
        "netstat" => none(&mut args, "netstat").map(|()| Command::Netstat)?,
        "ping" => {
            let usage = "ping <a.b.c.d>";
            let arg = one(&mut args, "ping", usage)?;
            Command::Ping(
                brainix_wire::parse_ip(arg).ok_or(ParseError::NotAnAddress { arg, usage })?,
            )
        }
        "write" => {
            let usage = "write <file> <text>";
            let rest = rest.trim_start_matches(' ');
            let (file, text) = rest.split_once(' ').unwrap_or((rest, ""));
            if file.is_empty() {
                return Err(ParseError::Missing {
                    command: "write",
                    usage,
                });
            }
            Command::Write(file, text)
        }
        "caps" => Command::Caps(one_number(&mut args, "caps", "caps <pid>")?),
        "kill" => Command::Kill(one_number(&mut args, "kill", "kill <pid>")?),
        "start" => {
            let usage = "start <name-or-pid>";
            let arg = args.next().ok_or(ParseError::Missing {
                command: "start",
                usage,
            })?;
            none(&mut args, usage)?;
            match number(arg) {
                Some(pid) => Command::Start(Target::Pid(pid)),
                None => Command::Start(Target::Name(arg)),
            }
        }
        other => return Err(ParseError::Unknown(other)),
    })
}

/// Exactly one argument.
fn one<'a>(
    args: &mut impl Iterator<Item = &'a str>,
    command: &'static str,
    usage: &'static str,
) -> Result<&'a str, ParseError<'a>> {
    let arg = args.next().ok_or(ParseError::Missing { command, usage })?;
    none(args, usage)?;
    Ok(arg)
}

/// Refuses any argument left.
fn none<'a>(
    args: &mut impl Iterator<Item = &'a str>,
    usage: &'static str,
) -> Result<(), ParseError<'a>> {
    match args.next() {
        Some(extra) => Err(ParseError::TooMany { extra, usage }),
        None => Ok(()),
    }
}

fn one_number<'a>(
    args: &mut impl Iterator<Item = &'a str>,
    command: &'static str,
    usage: &'static str,
) -> Result<u64, ParseError<'a>> {
    let arg = args.next().ok_or(ParseError::Missing { command, usage })?;
    if let Some(extra) = args.next() {
        return Err(ParseError::TooMany { extra, usage });
    }
    number(arg).ok_or(ParseError::NotANumber { arg, usage })
}

/// A decimal number, or hexadecimal with `0x`.
fn number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None if s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok(),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_parses() {
        let cases: [(&[u8], Command<'_>); 17] = [
            (
                b"approve 2",
                Command::Decide {
                    id: 2,
                    approve: true,
                },
            ),
            (
                b"deny 0x1",
                Command::Decide {
                    id: 1,
                    approve: false,
                },
            ),
            (b"audit", Command::Audit),
            (
                b"fuzz 100000",
                Command::Fuzz {
                    calls: 100_000,
                    seed: None,
                },
            ),
            (
                b"fuzz 10 0xbeef",
                Command::Fuzz {
                    calls: 10,
                    seed: Some(0xbeef),
                },
            ),
            (b"", Command::Nothing),
            (b"   ", Command::Nothing),
            (b"help", Command::Help),
            (b" ps ", Command::Ps),
            (b"caps 3", Command::Caps(3)),
            (b"mem", Command::Mem),
            (b"uptime", Command::Uptime),
            (b"echo hello  world", Command::Echo("hello  world")),
            (b"ipc-bench", Command::IpcBench),
            (b"kill 0x1f", Command::Kill(31)),
            (b"start 4", Command::Start(Target::Pid(4))),
            (
                b"start forged-handle",
                Command::Start(Target::Name("forged-handle")),
            ),
        ];
        for (line, want) in cases {
            assert_eq!(parse(line), Ok(want), "{:?}", core::str::from_utf8(line));
        }
        assert_eq!(parse(b"echo"), Ok(Command::Echo("")));
        let files: [(&[u8], Command<'_>); 11] = [
            (b"random 16", Command::Random(16)),
            (b"ping 10.0.2.2", Command::Ping([10, 0, 2, 2])),
            (b"netstat", Command::Netstat),
            (b"devices", Command::Devices),
            (b"ls", Command::Ls),
            (b"df", Command::Df),
            (b"cat notes.txt", Command::Cat("notes.txt")),
            (b"rm a", Command::Rm("a")),
            (b"stat a", Command::Stat("a")),
            (b"fs-bench big.bin", Command::FsBench("big.bin")),
            (
                b"write a.txt hello  there",
                Command::Write("a.txt", "hello  there"),
            ),
        ];
        for (line, want) in files {
            assert_eq!(parse(line), Ok(want), "{:?}", core::str::from_utf8(line));
        }
        assert_eq!(parse(b"write a.txt"), Ok(Command::Write("a.txt", "")));
    }

    #[test]
    fn errors_say_what_was_wrong_and_what_was_expected() {
        let msg = |line: &[u8]| parse(line).unwrap_err().to_string();
        assert_eq!(
            msg(b"mv a b"),
            "error: unknown command 'mv' (type 'help' for the list)"
        );
        assert_eq!(
            msg(b"caps"),
            "error: caps needs an argument (usage: caps <pid>)"
        );
        assert_eq!(
            msg(b"kill init"),
            "error: 'init' is not a number (usage: kill <pid>)"
        );
        assert_eq!(
            msg(b"caps 1 2"),
            "error: unexpected '2' (usage: caps <pid>)"
        );
        assert_eq!(msg(b"ps -a"), "error: unexpected '-a' (usage: ps)");
        assert_eq!(
            msg(b"start"),
            "error: start needs an argument (usage: start <name-or-pid>)"
        );
        assert_eq!(
            msg(b"start a b"),
            "error: unexpected 'b' (usage: start <name-or-pid>)"
        );
        assert_eq!(msg(b"\xff"), "error: the line is not text");
        assert_eq!(
            msg(b"fuzz"),
            "error: fuzz needs an argument (usage: fuzz <calls> [seed])"
        );
        assert_eq!(
            msg(b"fuzz 10 x"),
            "error: 'x' is not a number (usage: fuzz <calls> [seed])"
        );
        assert_eq!(
            msg(b"fuzz 1 2 3"),
            "error: unexpected '3' (usage: fuzz <calls> [seed])"
        );
        assert_eq!(msg(b"audit now"), "error: unexpected 'now' (usage: audit)");
        assert_eq!(
            msg(b"cat"),
            "error: cat needs an argument (usage: cat <file>)"
        );
        assert_eq!(msg(b"rm a b"), "error: unexpected 'b' (usage: rm <file>)");
        assert_eq!(
            msg(b"write"),
            "error: write needs an argument (usage: write <file> <text>)"
        );
        assert_eq!(
            msg(b"kill 99999999999999999999"),
            "error: '99999999999999999999' is not a number (usage: kill <pid>)"
        );
    }

    #[test]
    fn ping_wants_one_dotted_address() {
        let usage = "ping <a.b.c.d>";
        for arg in ["10.0.2", "10.0.2.256", "host"] {
            let line = std::format!("ping {arg}");
            assert_eq!(
                parse(line.as_bytes()),
                Err(ParseError::NotAnAddress { arg, usage })
            );
        }
        assert_eq!(
            parse(b"ping"),
            Err(ParseError::Missing {
                command: "ping",
                usage
            })
        );
    }
}
