//! Progress bars for the long commands (`train`, `enroll`, `eval`, `record`): one look
//! for all four, drawn on stderr only when a person is watching.
//!
//! A bar is drawn when stderr is a terminal, `--quiet` was not given and hark's log
//! level lets `info` through (`RUST_LOG=warn` hides bars too); otherwise [`bar`] hands
//! back a hidden one, so callers never branch. Log lines written while a bar is on
//! screen go through [`LogWriter`], which lifts the bar, writes, and redraws it.

use std::borrow::Cow;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use indicatif::{ProgressBar, ProgressState, ProgressStyle};

static QUIET: AtomicBool = AtomicBool::new(false);

/// The bar on screen, if any, for [`LogWriter`].
static ACTIVE: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// `--quiet`: no progress bars from now on.
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// Whether bars are drawn: the rule of the module comment, decided from its parts.
pub fn visible(quiet: bool, stderr_is_terminal: bool, info_logged: bool) -> bool {
    !quiet && stderr_is_terminal && info_logged
}

fn shown() -> bool {
    visible(
        QUIET.load(Ordering::Relaxed),
        std::io::stderr().is_terminal(),
        tracing::enabled!(tracing::Level::INFO),
    )
}

/// What a bar counts.
#[derive(Debug, Clone, Copy)]
pub enum Unit {
    /// Whole things: files, clips, steps (the word is shown after the count).
    Items(&'static str),
    /// Seconds of audio; positions and length are in milliseconds.
    Seconds,
}

/// A progress bar that clears itself when dropped (also on an early `?` return).
#[derive(Debug)]
pub struct Bar(ProgressBar);

impl std::ops::Deref for Bar {
    type Target = ProgressBar;
    fn deref(&self) -> &ProgressBar {
        &self.0
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.0.finish_and_clear();
        if let Ok(mut active) = ACTIVE.lock() {
            *active = None;
        }
    }
}

impl Bar {
    /// Prints a line to stdout without tearing the bar.
    pub fn stdout_line(&self, line: &str) -> std::io::Result<()> {
        self.0
            .suspend(|| writeln!(std::io::stdout().lock(), "{line}"))
    }

    /// Prints a line to stderr without tearing the bar.
    pub fn stderr_line(&self, line: &str) {
        self.0.suspend(|| eprintln!("{line}"));
    }
}

/// A bar of `len` units labelled `what` (e.g. "enrolling"): a hidden one unless a
/// person is watching (see the module comment).
pub fn bar(len: u64, what: impl Into<Cow<'static, str>>, unit: Unit) -> Bar {
    if !shown() {
        return Bar(ProgressBar::hidden());
    }
    let template = match unit {
        Unit::Items(word) => format!(
            "{{prefix:>10.bold}} [{{bar:30.cyan/blue}}] {{pos}}/{{len}} {word}  \
             {{elapsed}} elapsed, ~{{eta}} left  {{msg}}"
        ),
        Unit::Seconds => "{prefix:>10.bold} [{bar:30.cyan/blue}] {seconds} s  \
                          {elapsed} elapsed, ~{eta} left  {msg}"
            .to_string(),
    };
    let style = ProgressStyle::with_template(&template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
        .with_key(
            "seconds",
            |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(
                    w,
                    "{:.1}/{:.1}",
                    s.pos() as f64 / 1000.0,
                    s.len().unwrap_or(0) as f64 / 1000.0
                );
            },
        );
    let pb = ProgressBar::new(len).with_style(style).with_prefix(what);
    if let Ok(mut active) = ACTIVE.lock() {
        *active = Some(pb.clone());
    }
    Bar(pb)
}

/// The log writer of every command: stderr, with the bar on screen (if any) lifted
/// around each line.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let active = ACTIVE.lock().ok().and_then(|a| a.clone());
        match active {
            Some(pb) if !pb.is_finished() => pb.suspend(|| std::io::stderr().write(buf)),
            _ => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_only_for_a_watching_person() {
        assert!(visible(false, true, true));
        assert!(!visible(true, true, true), "--quiet");
        assert!(!visible(false, false, true), "stderr is a pipe or file");
        assert!(!visible(false, true, false), "log level above info");
    }

    #[test]
    fn a_hidden_bar_takes_every_call() {
        // Tests run with stderr captured: the bar is hidden, and calls are no-ops.
        let b = bar(10, "testing", Unit::Seconds);
        b.inc(3);
        b.set_message("x");
        assert!(b.is_hidden());
    }
}
