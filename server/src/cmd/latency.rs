//! `LATENCY LATEST | HISTORY event | RESET [event ...] | DOCTOR | HELP`: the latency monitor
//! ([`crate::slowlog::LatencyMonitor`]) in Redis's shapes.

use std::fmt::Write;

use bytes::Bytes;
use sessiond_protocol::cmd::Latency;
use sessiond_protocol::Frame;

use super::client::verbatim;
use super::Ctx;

/// Answers LATENCY.
pub fn latency(ctx: &mut Ctx<'_>, cmd: Latency) -> Frame {
    let monitor = &ctx.shared.latency;
    match cmd {
        Latency::Latest => Frame::Array(
            monitor
                .events()
                .into_iter()
                .filter_map(|(name, event)| {
                    let (at, ms) = *event.samples.back()?;
                    Some(Frame::Array(vec![
                        Frame::Bulk(Bytes::from_static(name.as_bytes())),
                        Frame::Integer(at as i64),
                        Frame::Integer(ms as i64),
                        Frame::Integer(event.max_ms as i64),
                    ]))
                })
                .collect(),
        ),
        Latency::History(name) => Frame::Array(
            monitor
                .events()
                .into_iter()
                .find(|(event, _)| event.as_bytes() == name.as_ref())
                .map(|(_, event)| {
                    event
                        .samples
                        .iter()
                        .map(|&(at, ms)| {
                            Frame::Array(vec![Frame::Integer(at as i64), Frame::Integer(ms as i64)])
                        })
                        .collect()
                })
                .unwrap_or_default(),
        ),
        Latency::Reset(names) => Frame::Integer(monitor.reset(&names) as i64),
        Latency::Doctor => verbatim(doctor(ctx)),
        Latency::Help => Frame::Array(
            [
                "LATENCY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "DOCTOR",
                "    Return a human readable latency analysis report.",
                "HISTORY <event>",
                "    Return time-latency samples for the <event> class.",
                "LATEST",
                "    Return the latest latency samples for all events.",
                "RESET [<event> ...]",
                "    Reset latency data of one or more <event> classes.",
                "    (default: reset all data for all event classes)",
                "HELP",
                "    Print this help.",
            ]
            .into_iter()
            .map(Frame::simple)
            .collect(),
        ),
    }
}

/// LATENCY DOCTOR's report: each event's spikes, their average and the worst.
fn doctor(ctx: &Ctx<'_>) -> String {
    let monitor = &ctx.shared.latency;
    if monitor.threshold_ms() == 0 {
        return "I'm sorry, Dave, I can't do that. Latency monitoring is disabled in this \
                sessiond instance. You may use \"CONFIG SET latency-monitor-threshold \
                <milliseconds>.\" if you want to enable it.\n"
            .to_owned();
    }
    let events = monitor.events();
    if events.is_empty() {
        return "Dave, no latency spike was observed during the lifetime of this sessiond \
                instance, not in the slightest bit. I honestly think you ought to sleep better \
                tonight.\n"
            .to_owned();
    }
    let mut report = String::from(
        "Dave, I have observed latency spikes in this sessiond instance. You don't mind \
         talking about it, do you Dave?\n\n",
    );
    for (number, (name, event)) in events.iter().enumerate() {
        let spikes = event.samples.len() as u64;
        let average = event.samples.iter().map(|(_, ms)| ms).sum::<u64>() / spikes.max(1);
        let _ = writeln!(
            report,
            "{}. {name}: {spikes} latency spikes (average {average}ms). Worst all time event \
             {}ms.",
            number + 1,
            event.max_ms
        );
    }
    report.push_str(
        "\nI have a few advices for you:\n\n- Check SLOWLOG GET for the commands that ran \
         longest, and INFO latencystats for each command's percentiles.\n",
    );
    report
}
