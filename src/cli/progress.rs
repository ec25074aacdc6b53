//! Progress bars for long work (replay, verify, export): events per second and time left on a
//! terminal, nothing at all in JSON output or when stderr is not a terminal.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

fn hidden(quiet: bool) -> bool {
    quiet || !std::io::stderr().is_terminal()
}

/// A bar over `total` events; hidden when `quiet` or when stderr is not a terminal.
pub fn events(total: u64, quiet: bool) -> ProgressBar {
    let bar = if hidden(quiet) {
        ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden())
    } else {
        ProgressBar::new(total)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:10} {bar:40} {human_pos}/{human_len} events  {per_sec}  eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// A spinner for work whose total is not known ahead (compaction), shown under the same rule.
pub fn spinner(quiet: bool) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    if hidden(quiet) {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar
}
