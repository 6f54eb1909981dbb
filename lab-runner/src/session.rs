//! Driving one boot's console: bytes in, a checked [`Transcript`] and its evidence out, under the
//! layered timeouts (boot, check, silence, exit; the run timeout wraps the whole session from
//! outside). Backend-neutral: the console is any `AsyncRead`, the machine's exit any future.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::time::{Instant, sleep_until};

use crate::console_log::ConsoleLog;
use crate::protocol::Nonce;
use crate::protocol::lines::LineAssembler;
use crate::protocol::transcript::{Event, Transcript};

/// Bytes read from the console per call. 8 KiB matches a pipe's typical burst and keeps the
/// per-boot buffer small.
pub const READ_CHUNK: usize = 8192;

/// After the machine exits, how long the console may still deliver bytes it already produced
/// (a pipe drains in microseconds; a USB serial adapter in a few milliseconds).
pub const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(500);

/// Most watched lines remembered per boot.
pub const MAX_WATCHED: usize = 8;

/// Timeouts for one boot, already scaled by the board.
#[derive(Debug, Clone)]
pub struct Limits {
    /// From start to the PLAN frame (or to the machine's exit when no PLAN is expected).
    pub boot: Duration,
    /// From PLAN to END: the sum of the boot's check timeouts.
    pub checks: Duration,
    /// Longest stretch without a console byte.
    pub silence: Duration,
    /// After END, how long the machine may take to exit.
    pub exit: Duration,
    /// The machine reports its exit (QEMU). When false, the session ends at END.
    pub expect_exit: bool,
}

/// Console input for one boot: the lines typed on the target once it says it reads its console.
///
/// Readiness is a result frame, never a prompt: the target's shell reports the check
/// [`Script::ready`] just before it first reads, so nothing a process prints can make the runner
/// type early, and a slow boot is waited for rather than raced.
#[derive(Debug, Clone)]
pub struct Script {
    /// The RESULT id whose arrival means typed input will be read.
    pub ready: String,
    /// Steps, typed one at a time, in order.
    pub steps: Vec<Step>,
    /// Pause after each typed byte (targets without a receive FIFO drop characters otherwise).
    pub char_delay: Duration,
}

/// Where typed bytes go: the console's transmit side.
pub type ConsoleWriter = Box<dyn AsyncWrite + Unpin + Send>;

/// One typed line and what it should bring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The line to type; `None` when an earlier step already typed it (two checks answered by
    /// one program), so this step only waits.
    pub line: Option<String>,
    /// RESULT ids this step waits for; the next step starts when all arrived or time is up.
    pub awaits: Vec<String>,
    /// How long the step may take after its line is typed.
    pub timeout: Duration,
}

/// Where a script got to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Typed {
    /// The target reported ready (after this long from the start of the boot).
    pub ready_at: Option<Duration>,
    /// Lines typed, with the console line number they were typed after.
    pub lines: Vec<(u64, String)>,
    /// Steps whose results did not all arrive in time.
    pub timed_out: usize,
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The machine exited; `None` when it was killed by a signal.
    Exited(Option<i32>),
    /// END arrived and the machine has no exit channel.
    EndFrame,
    /// No PLAN within the boot timeout.
    BootTimeout,
    /// PLAN arrived but END did not within the check budget.
    CheckTimeout,
    /// The console was silent too long.
    SilenceTimeout,
    /// END arrived but the machine did not exit in time.
    ExitTimeout,
    /// The console reached end-of-file while the machine was not known to have exited.
    ConsoleClosed,
    /// Reading the console failed.
    ConsoleError(String),
    /// Every result the runner waits for arrived (a running system, which does not exit).
    AllReported,
    /// Typing on the console failed.
    InputError(String),
}

impl Ending {
    /// One line for reports.
    pub fn describe(&self) -> String {
        match self {
            Ending::Exited(Some(s)) => format!(
                "machine exited with status {s} ({})",
                crate::protocol::ExitMeaning::decode(*s)
            ),
            Ending::Exited(None) => "machine was killed by a signal".into(),
            Ending::EndFrame => "END received (machine has no exit channel)".into(),
            Ending::BootTimeout => "boot timeout: no PLAN frame in time".into(),
            Ending::CheckTimeout => {
                "check timeout: PLAN announced, END not received in time".into()
            }
            Ending::SilenceTimeout => {
                "silence timeout: the console stopped producing output".into()
            }
            Ending::ExitTimeout => "exit timeout: END received but the machine did not exit".into(),
            Ending::ConsoleClosed => "console closed while the machine was running".into(),
            Ending::ConsoleError(e) => format!("console read failed: {e}"),
            Ending::AllReported => "every awaited result arrived".into(),
            Ending::InputError(e) => format!("typing on the console failed: {e}"),
        }
    }
}

/// What one boot produced.
#[derive(Debug)]
pub struct Observation {
    /// The checked protocol stream.
    pub transcript: Transcript,
    /// Why it ended.
    pub ending: Ending,
    /// Console bytes received.
    pub bytes: u64,
    /// Time to the first console byte.
    pub first_byte: Option<Duration>,
    /// Time to the PLAN frame.
    pub plan_at: Option<Duration>,
    /// Time to the end of the session.
    pub duration: Duration,
    /// Evidence per accepted RESULT id: the console lines since the previous frame.
    pub evidence: BTreeMap<String, Vec<String>>,
    /// Evidence for the boot report: the lines up to and including it.
    pub report_evidence: Vec<String>,
    /// The last lines of the boot.
    pub tail: Vec<String>,
    /// Lines that contained one of the watched texts: (line number, escaped line).
    pub watched: Vec<(u64, String)>,
    /// What was typed, when the boot had a script.
    pub typed: Option<Typed>,
    /// PCRs read from the board's TPM after the machine stopped, by number, or why they could
    /// not be read (filled by the backend; empty when no check asked).
    pub pcrs: BTreeMap<u32, Result<[u8; 32], String>>,
    /// What each of those PCRs must hold after this boot, or why no prediction exists.
    pub pcr_predictions: BTreeMap<u32, Result<[u8; 32], String>>,
}

/// Runs one boot's console to its end. `exit` resolves when the machine exits (never, for
/// machines without an exit channel). Never returns early on hostile input.
pub async fn drive<R, X>(
    console: R,
    exit: X,
    nonce: Nonce,
    limits: &Limits,
    watch: &[String],
    log: &mut ConsoleLog,
) -> Observation
where
    R: AsyncRead + Unpin,
    X: Future<Output = Option<i32>>,
{
    drive_with(console, None, exit, nonce, limits, watch, log).await
}

/// A script's progress inside [`drive_with`].
struct Typist {
    script: Script,
    writer: ConsoleWriter,
    next: usize,
    /// The running step's deadline.
    deadline: Option<Instant>,
    typed: Typed,
}

impl Typist {
    /// True when every id a step waits for, and the target announced, has arrived (an id the
    /// target did not announce cannot arrive).
    fn all_arrived(&self, t: &Transcript) -> bool {
        let announced = |id: &String| t.plan.as_ref().is_some_and(|(ids, _)| ids.contains(id));
        self.script
            .steps
            .iter()
            .flat_map(|s| s.awaits.iter())
            .filter(|id| announced(id))
            .all(|id| t.results.contains_key(id))
    }

    /// Moves the script on: types the next line once the target is ready and the running step
    /// is done. Returns an error only when typing itself failed.
    async fn advance(
        &mut self,
        t: &Transcript,
        now: Instant,
        start: Instant,
        line_no: u64,
    ) -> std::io::Result<()> {
        if self.typed.ready_at.is_none() {
            if !t.results.contains_key(&self.script.ready) {
                return Ok(());
            }
            self.typed.ready_at = Some(now - start);
        }
        loop {
            if let Some(deadline) = self.deadline {
                let step = &self.script.steps[self.next - 1];
                let done = step.awaits.iter().all(|id| t.results.contains_key(id));
                if !done && now < deadline {
                    return Ok(());
                }
                if !done {
                    self.typed.timed_out += 1;
                }
                self.deadline = None;
            }
            let Some(step) = self.script.steps.get(self.next) else {
                return Ok(());
            };
            self.next += 1;
            // A check the target did not announce cannot arrive: do not wait for it.
            let announced = t
                .plan
                .as_ref()
                .is_some_and(|(ids, _)| step.awaits.iter().any(|a| ids.contains(a)));
            if !announced {
                continue;
            }
            if let Some(line) = &step.line {
                crate::backend::physical::type_line(&mut self.writer, line, self.script.char_delay)
                    .await?;
                self.typed.lines.push((line_no, line.clone()));
            }
            self.deadline = Some(Instant::now() + step.timeout);
        }
    }
}

/// [`drive`], typing `script` on the console once the target reports ready. The session ends
/// when every result the script waits for has arrived (a running system never exits by itself),
/// or by the usual timeouts.
pub async fn drive_with<R, X>(
    mut console: R,
    input: Option<(Script, ConsoleWriter)>,
    exit: X,
    nonce: Nonce,
    limits: &Limits,
    watch: &[String],
    log: &mut ConsoleLog,
) -> Observation
where
    R: AsyncRead + Unpin,
    X: Future<Output = Option<i32>>,
{
    let mut typist = input.map(|(script, writer)| Typist {
        script,
        writer,
        next: 0,
        deadline: None,
        typed: Typed::default(),
    });
    let mut lines_seen = 0u64;
    let start = Instant::now();
    let mut transcript = Transcript::new(nonce);
    let mut assembler = LineAssembler::new();
    let mut buf = vec![0u8; READ_CHUNK];
    let mut obs_bytes = 0u64;
    let mut first_byte = None;
    let mut plan_at: Option<Instant> = None;
    let mut end_at: Option<Instant> = None;
    let mut exited: Option<(Instant, Option<i32>)> = None;
    let mut last_byte = start;
    let mut last_frame_line = 0u64;
    let mut evidence = BTreeMap::new();
    let mut report_evidence = Vec::new();
    let mut watched = Vec::new();
    let mut exit = std::pin::pin!(exit);

    let ending = loop {
        if end_at.is_some() && !limits.expect_exit {
            break Ending::EndFrame;
        }
        if let Some(ty) = typist.as_mut() {
            if let Err(e) = ty
                .advance(&transcript, Instant::now(), start, lines_seen)
                .await
            {
                break Ending::InputError(e.to_string());
            }
            if ty.next >= ty.script.steps.len()
                && ty.deadline.is_none()
                && ty.all_arrived(&transcript)
                && exited.is_none()
            {
                break Ending::AllReported;
            }
        }
        let (phase_deadline, phase_ending) = match (exited, end_at, plan_at) {
            (Some((t, status)), _, _) => (t + DRAIN_AFTER_EXIT, Ending::Exited(status)),
            (None, Some(t), _) => (t + limits.exit, Ending::ExitTimeout),
            (None, None, Some(t)) => (t + limits.checks, Ending::CheckTimeout),
            (None, None, None) => (start + limits.boot, Ending::BootTimeout),
        };
        let silence_deadline = last_byte + limits.silence;
        let (mut deadline, timeout_ending) =
            if exited.is_none() && silence_deadline < phase_deadline {
                (silence_deadline, Ending::SilenceTimeout)
            } else {
                (phase_deadline, phase_ending)
            };
        // Wake for the running step's deadline too; the loop then moves the script on.
        let step_deadline = typist.as_ref().and_then(|t| t.deadline);
        let step_wakes = step_deadline.is_some_and(|d| d < deadline);
        if let Some(d) = step_deadline.filter(|_| step_wakes) {
            deadline = d;
        }
        tokio::select! {
            r = console.read(&mut buf) => match r {
                Ok(0) => match exited {
                    Some((_, status)) => break Ending::Exited(status),
                    // The console closed: if the machine is exiting, give it a moment to say so.
                    None => match tokio::time::timeout(DRAIN_AFTER_EXIT, &mut exit).await {
                        Ok(status) => break Ending::Exited(status),
                        Err(_) => break Ending::ConsoleClosed,
                    },
                },
                Ok(n) => {
                    let now = Instant::now();
                    last_byte = now;
                    first_byte.get_or_insert(now - start);
                    obs_bytes += n as u64;
                    log.raw(&buf[..n]);
                    let mut completed = Vec::new();
                    assembler.feed(&buf[..n], |l| completed.push(l));
                    for line in completed {
                        let no = log.line(&line);
                        lines_seen = no;
                        note_watched(&line.bytes, no, watch, &mut watched);
                        match transcript.feed(no, &line) {
                            Event::Plan => { plan_at = Some(now); last_frame_line = no; }
                            Event::Result(id) => {
                                evidence.insert(id, log.slice(last_frame_line + 1, no));
                                last_frame_line = no;
                            }
                            Event::End => { end_at = Some(now); last_frame_line = no; }
                            Event::BootReport => report_evidence = log.slice(no.saturating_sub(crate::console_log::EVIDENCE_MAX_LINES as u64), no),
                            Event::Log | Event::Rejected => {}
                        }
                    }
                }
                Err(e) => break Ending::ConsoleError(e.to_string()),
            },
            status = &mut exit, if exited.is_none() => exited = Some((Instant::now(), status)),
            _ = sleep_until(deadline) => if !step_wakes { break timeout_ending },
        }
    };
    if let Some(line) = assembler.finish() {
        let no = log.line(&line);
        note_watched(&line.bytes, no, watch, &mut watched);
        // When the runner itself stopped reading (every result it waits for is in), the target
        // was cut off mid-line (typically its END): that half line is evidence, not a frame.
        if ending != Ending::AllReported {
            transcript.feed(no, &line);
        }
    }
    log.flush();
    Observation {
        transcript,
        ending,
        bytes: obs_bytes,
        first_byte,
        plan_at: plan_at.map(|t| t - start),
        duration: start.elapsed(),
        evidence,
        report_evidence,
        tail: log.tail(),
        watched,
        typed: typist.map(|t| t.typed),
        pcrs: BTreeMap::new(),
        pcr_predictions: BTreeMap::new(),
    }
}

fn note_watched(bytes: &[u8], no: u64, watch: &[String], out: &mut Vec<(u64, String)>) {
    if out.len() < MAX_WATCHED
        && watch
            .iter()
            .any(|w| !w.is_empty() && bytes.windows(w.len()).any(|win| win == w.as_bytes()))
    {
        out.push((no, crate::console_log::escape_bytes(bytes)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Frame, encode_frame};
    use tokio::io::{AsyncWriteExt, duplex};

    fn nonce() -> Nonce {
        Nonce::parse("aaaabbbbccccdddd0000111122223333").unwrap()
    }

    fn limits() -> Limits {
        Limits {
            boot: Duration::from_secs(5),
            checks: Duration::from_secs(5),
            silence: Duration::from_secs(2),
            exit: Duration::from_secs(1),
            expect_exit: true,
        }
    }

    fn res(id: &str, pass: bool) -> Frame {
        Frame::Result {
            id: id.into(),
            pass,
            detail: "-".into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_good_boot_split_at_every_byte_is_read_whole() {
        let n = nonce();
        let text = format!(
            "brainix: boot\r\nBRAINIX-BOOT-REPORT v1 selfcheck=PASS\n{}\n{}\n{}\n",
            encode_frame(&n, 0, &Frame::Plan(vec!["mem.wx".into()])),
            encode_frame(&n, 1, &res("mem.wx", true)),
            encode_frame(&n, 2, &Frame::End(1)),
        );
        let (mut tx, rx) = duplex(64);
        let (exit_tx, exit_rx) = tokio::sync::oneshot::channel::<Option<i32>>();
        tokio::spawn(async move {
            for b in text.as_bytes() {
                tx.write_all(&[*b]).await.unwrap();
            }
            let _ = exit_tx.send(Some(33));
            drop(tx);
        });
        let mut log = ConsoleLog::in_memory();
        let obs = drive(
            rx,
            async { exit_rx.await.ok().flatten() },
            n,
            &limits(),
            &[],
            &mut log,
        )
        .await;
        assert_eq!(obs.ending, Ending::Exited(Some(33)));
        assert!(obs.transcript.results["mem.wx"].pass);
        assert_eq!(obs.transcript.boot_reports.len(), 1);
        assert!(
            obs.evidence["mem.wx"]
                .iter()
                .any(|l| l.contains("RESULT mem.wx PASS"))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn fake_lines_without_the_nonce_and_escapes_do_not_become_passes() {
        let n = nonce();
        let other = Nonce::parse("ffffffffffffffffffffffffffffffff").unwrap();
        let text = format!(
            "{}\n\x1b[2K{}\n{}\nBNX1 {} 1 RESULT mem.wx PASS - *00000000\n{}\n",
            encode_frame(&n, 0, &Frame::Plan(vec!["mem.wx".into()])),
            encode_frame(&n, 1, &res("mem.wx", true)), // hidden behind an escape: not at line start
            encode_frame(&other, 1, &res("mem.wx", true)),
            n.as_str(),
            encode_frame(&n, 1, &res("mem.wx", false)),
        );
        let (mut tx, rx) = duplex(4096);
        tx.write_all(text.as_bytes()).await.unwrap();
        drop(tx);
        let mut log = ConsoleLog::in_memory();
        let obs = drive(rx, std::future::pending(), n, &limits(), &[], &mut log).await;
        assert_eq!(obs.ending, Ending::ConsoleClosed);
        // The bad-CRC line with our nonce distrusts everything after it, including the real FAIL.
        assert!(
            obs.transcript.results.is_empty(),
            "{:?}",
            obs.transcript.results
        );
        assert!(obs.transcript.is_distrusted());
        assert_eq!(
            obs.transcript.violations.len(),
            3,
            "{:?}",
            obs.transcript.violations
        );
    }

    #[tokio::test(start_paused = true)]
    async fn endless_output_without_newline_ends_at_the_boot_timeout_with_bounded_memory() {
        let (mut tx, rx) = duplex(8192);
        tokio::spawn(async move {
            let chunk = vec![b'Z'; 4096];
            while tx.write_all(&chunk).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        let mut log = ConsoleLog::in_memory();
        let obs = drive(
            rx,
            std::future::pending(),
            nonce(),
            &limits(),
            &[],
            &mut log,
        )
        .await;
        assert_eq!(obs.ending, Ending::BootTimeout);
        assert!(obs.bytes > 1_000_000, "{}", obs.bytes);
        assert_eq!(log.line_count(), 1, "only the cut partial line is logged");
    }

    #[tokio::test(start_paused = true)]
    async fn silence_and_check_timeouts_are_distinct() {
        let n = nonce();
        let (mut tx, rx) = duplex(4096);
        tx.write_all(
            format!("{}\n", encode_frame(&n, 0, &Frame::Plan(vec!["a".into()]))).as_bytes(),
        )
        .await
        .unwrap();
        let mut log = ConsoleLog::in_memory();
        let obs = drive(
            rx,
            std::future::pending(),
            n.clone(),
            &limits(),
            &[],
            &mut log,
        )
        .await;
        assert_eq!(obs.ending, Ending::SilenceTimeout);
        drop(tx);

        // Chatty but never finishing: the check budget ends it.
        let (mut tx, rx) = duplex(4096);
        let plan = format!("{}\n", encode_frame(&n, 0, &Frame::Plan(vec!["a".into()])));
        tokio::spawn(async move {
            tx.write_all(plan.as_bytes()).await.unwrap();
            loop {
                if tx.write_all(b"brainix: still busy\n").await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        let obs = drive(
            rx,
            std::future::pending(),
            n,
            &limits(),
            &[],
            &mut ConsoleLog::in_memory(),
        )
        .await;
        assert_eq!(obs.ending, Ending::CheckTimeout);
    }

    #[tokio::test(start_paused = true)]
    async fn end_without_exit_channel_stops_at_end_and_exit_timeout_applies_otherwise() {
        let n = nonce();
        let text = format!(
            "{}\n{}\n{}\n",
            encode_frame(&n, 0, &Frame::Plan(vec!["a".into()])),
            encode_frame(&n, 1, &res("a", true)),
            encode_frame(&n, 2, &Frame::End(1))
        );
        let mut lim = limits();
        lim.expect_exit = false;
        let (mut tx, rx) = duplex(4096);
        tx.write_all(text.as_bytes()).await.unwrap();
        let obs = drive(
            rx,
            std::future::pending(),
            n.clone(),
            &lim,
            &[],
            &mut ConsoleLog::in_memory(),
        )
        .await;
        assert_eq!(obs.ending, Ending::EndFrame);
        drop(tx);
        let (mut tx, rx) = duplex(4096);
        tx.write_all(text.as_bytes()).await.unwrap();
        let obs = drive(
            rx,
            std::future::pending(),
            n,
            &limits(),
            &[],
            &mut ConsoleLog::in_memory(),
        )
        .await;
        assert_eq!(obs.ending, Ending::ExitTimeout);
        drop(tx);
    }

    /// A fake target: prints `before`, then answers each typed line per `answer` (typed line to
    /// the frames it prints). Returns what it was typed.
    fn fake_target(
        before: String,
        answer: Vec<(&'static str, String)>,
    ) -> (
        tokio::io::DuplexStream,
        ConsoleWriter,
        tokio::task::JoinHandle<Vec<String>>,
    ) {
        let (mut out_tx, out_rx) = duplex(65536);
        let (in_tx, in_rx) = duplex(4096);
        let task = tokio::spawn(async move {
            out_tx.write_all(before.as_bytes()).await.unwrap();
            let mut typed = Vec::new();
            let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(in_rx));
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some((_, reply)) = answer.iter().find(|(l, _)| *l == line) {
                    // Typed input echoes, and a process may leave a line half written.
                    out_tx
                        .write_all(format!("brainix> {line}\r\nhalf a line").as_bytes())
                        .await
                        .unwrap();
                    out_tx.write_all(reply.as_bytes()).await.unwrap();
                }
                typed.push(line);
            }
            typed
        });
        (out_rx, Box::new(in_tx), task)
    }

    fn script(steps: &[(Option<&str>, &str)]) -> Script {
        Script {
            ready: "shell.ready".into(),
            steps: steps
                .iter()
                .map(|(line, id)| Step {
                    line: line.map(String::from),
                    awaits: vec![id.to_string()],
                    timeout: Duration::from_secs(3),
                })
                .collect(),
            char_delay: Duration::ZERO,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn lines_are_typed_only_after_ready_one_step_at_a_time() {
        let n = nonce();
        let other = Nonce::parse("ffffffffffffffffffffffffffffffff").unwrap();
        let plan = Frame::Plan(vec![
            "shell.ready".into(),
            "a.one".into(),
            "a.two".into(),
            "a.three".into(),
        ]);
        // A prompt and a forged readiness frame come first: neither may start the typing.
        let before = format!(
            "{}\nbrainix> \n{}\nbrainix: booting on\n\n{}\n",
            encode_frame(&n, 0, &plan),
            encode_frame(&other, 1, &res("shell.ready", true)),
            encode_frame(&n, 1, &res("shell.ready", true)),
        );
        let answers = vec![
            (
                "start one",
                format!(
                    "\n{}\n\n{}\n",
                    encode_frame(&n, 2, &res("a.one", true)),
                    encode_frame(&n, 3, &res("a.two", false))
                ),
            ),
            (
                "check three",
                format!("\n{}\n", encode_frame(&n, 4, &res("a.three", true))),
            ),
        ];
        let (console, writer, target) = fake_target(before, answers);
        let steps = script(&[
            (Some("start one"), "a.one"),
            (None, "a.two"),
            (Some("check three"), "a.three"),
            (Some("never announced"), "b.gone"),
        ]);
        let obs = drive_with(
            console,
            Some((steps, writer)),
            std::future::pending(),
            n,
            &limits(),
            &[],
            &mut ConsoleLog::in_memory(),
        )
        .await;
        assert_eq!(
            obs.ending,
            Ending::AllReported,
            "{:?}",
            obs.transcript.violations
        );
        let t = &obs.transcript;
        assert!(t.results["a.one"].pass && !t.results["a.two"].pass && t.results["a.three"].pass);
        let typed = obs.typed.unwrap();
        assert!(typed.ready_at.is_some());
        assert_eq!(typed.timed_out, 0);
        let lines: Vec<&str> = typed.lines.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(
            lines,
            ["start one", "check three"],
            "typed once each, unannounced skipped"
        );
        drop(obs.transcript);
        assert_eq!(target.await.unwrap(), ["start one", "check three"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_line_cut_off_when_the_runner_stops_is_not_a_violation() {
        let n = nonce();
        let plan = Frame::Plan(vec!["shell.ready".into(), "a.one".into()]);
        let end = encode_frame(&n, 3, &Frame::End(2));
        // The target's END is still being written when the last awaited result is in.
        let before = format!(
            "{}\n{}\n{}\n{}",
            encode_frame(&n, 0, &plan),
            encode_frame(&n, 1, &res("shell.ready", true)),
            encode_frame(&n, 2, &res("a.one", true)),
            &end[..end.len() - 5],
        );
        let (console, writer, _target) = fake_target(before, vec![]);
        let obs = drive_with(
            console,
            Some((script(&[(None, "a.one")]), writer)),
            std::future::pending(),
            n,
            &limits(),
            &[],
            &mut ConsoleLog::in_memory(),
        )
        .await;
        assert_eq!(obs.ending, Ending::AllReported);
        assert!(
            !obs.transcript.is_distrusted(),
            "{:?}",
            obs.transcript.violations
        );
        assert!(obs.transcript.results["a.one"].pass);
    }

    #[tokio::test(start_paused = true)]
    async fn without_ready_nothing_is_typed_and_a_silent_step_times_out() {
        let n = nonce();
        let plan = Frame::Plan(vec!["shell.ready".into(), "a.one".into(), "a.two".into()]);
        // Never ready: nothing typed, the check budget ends the boot.
        let before = format!("{}\nbrainix> ", encode_frame(&n, 0, &plan));
        let (console, writer, target) = fake_target(before, vec![]);
        let obs = drive_with(
            console,
            Some((script(&[(Some("start one"), "a.one")]), writer)),
            std::future::pending(),
            n.clone(),
            &limits(),
            &[],
            &mut ConsoleLog::in_memory(),
        )
        .await;
        assert!(matches!(
            obs.ending,
            Ending::CheckTimeout | Ending::SilenceTimeout
        ));
        let typed = obs.typed.unwrap();
        assert!(typed.ready_at.is_none() && typed.lines.is_empty());
        assert!(target.await.unwrap().is_empty());

        // Ready, but the first step never answers: its timeout moves the script on.
        let before = format!(
            "{}\n{}\n",
            encode_frame(&n, 0, &plan),
            encode_frame(&n, 1, &res("shell.ready", true))
        );
        let answers = vec![(
            "start two",
            format!("\n{}\n", encode_frame(&n, 2, &res("a.two", true))),
        )];
        let (console, writer, _target) = fake_target(before, answers);
        let mut lim = limits();
        lim.silence = Duration::from_secs(60);
        let obs = drive_with(
            console,
            Some((
                script(&[(Some("start one"), "a.one"), (Some("start two"), "a.two")]),
                writer,
            )),
            std::future::pending(),
            n,
            &lim,
            &[],
            &mut ConsoleLog::in_memory(),
        )
        .await;
        let typed = obs.typed.unwrap();
        assert_eq!(typed.timed_out, 1);
        assert_eq!(typed.lines.len(), 2);
        assert!(obs.transcript.results["a.two"].pass);
        assert!(!obs.transcript.results.contains_key("a.one"));
        assert_eq!(obs.ending, Ending::CheckTimeout, "a.one never came");
    }

    #[tokio::test(start_paused = true)]
    async fn output_printed_just_before_exit_is_not_lost() {
        let (mut tx, rx) = duplex(4096);
        tx.write_all(b"brainix: refused: CPU lacks RDRAND")
            .await
            .unwrap();
        drop(tx);
        let watch = vec!["RDRAND".to_string()];
        let obs = drive(
            rx,
            async { Some(35) },
            nonce(),
            &limits(),
            &watch,
            &mut ConsoleLog::in_memory(),
        )
        .await;
        assert_eq!(obs.ending, Ending::Exited(Some(35)));
        assert_eq!(obs.watched.len(), 1);
    }
}
