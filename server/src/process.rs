//! What the operating system says about this process and its machine, for INFO: resident and
//! anonymous memory (`/proc/self/statm`), the machine's memory (`/proc/meminfo`) and CPU time
//! (`getrusage`). Zero where the system does not say (not Linux).
//!
//! `used_memory` is the process's anonymous resident memory (resident pages minus those mapped
//! from files): what the allocator holds and has touched, the server's own buffers and
//! overhead included, which is what Redis's allocator-reported figure means to an operator.
//! The keyspace's own accounting, which `maxmemory` is enforced against, is
//! `used_memory_dataset`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bytes of a page in `/proc/self/statm`'s counts.
const PAGE: u64 = 4096;

/// The process's memory as the kernel sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// Resident set size, bytes (`used_memory_rss`).
    pub rss: u64,
    /// Resident and not backed by a file: the heap, stacks and anonymous maps (`used_memory`).
    pub anonymous: u64,
}

/// Reads [`Memory`] from `/proc/self/statm`.
pub fn memory() -> Memory {
    let Ok(statm) = std::fs::read_to_string("/proc/self/statm") else {
        return Memory::default();
    };
    let mut pages = statm
        .split_whitespace()
        .map(|field| field.parse::<u64>().unwrap_or(0));
    let _size = pages.next();
    let resident = pages.next().unwrap_or(0);
    let shared = pages.next().unwrap_or(0);
    Memory {
        rss: resident * PAGE,
        anonymous: resident.saturating_sub(shared) * PAGE,
    }
}

/// The machine's memory, bytes (`MemTotal` of `/proc/meminfo`).
pub fn total_system_memory() -> u64 {
    let Ok(meminfo) = std::fs::read_to_string("/proc/meminfo") else {
        return 0;
    };
    meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kib| kib * 1024)
}

/// CPU time used, by the process and by its reaped children.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuTime {
    /// In the kernel on the process's behalf.
    pub system: Duration,
    /// In user space.
    pub user: Duration,
    /// Children's, in the kernel.
    pub children_system: Duration,
    /// Children's, in user space.
    pub children_user: Duration,
}

/// The process's [`CpuTime`].
pub fn cpu_time() -> CpuTime {
    let (system, user) = rusage(libc::RUSAGE_SELF);
    let (children_system, children_user) = rusage(libc::RUSAGE_CHILDREN);
    CpuTime {
        system,
        user,
        children_system,
        children_user,
    }
}

/// System and user time of `who`, zero if the call fails.
#[allow(unsafe_code)]
fn rusage(who: libc::c_int) -> (Duration, Duration) {
    // SAFETY: `rusage` is plain integers, for which all zeros is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes one `rusage` into the struct it is given, which lives here.
    if unsafe { libc::getrusage(who, &mut usage) } != 0 {
        return (Duration::ZERO, Duration::ZERO);
    }
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    (time(usage.ru_stime), time(usage.ru_utime))
}

/// How commands are timed: the CPU's timestamp counter where the kernel itself keeps time by it
/// (its clock source is `tsc`: the kernel found it invariant and synchronised across CPUs, and
/// `clock_gettime` reads it too), scaled to nanoseconds by a factor measured once; else the
/// monotonic clock. A TSC reading is one
/// instruction and its scaling one multiplication, where `clock_gettime` was ~4% of a
/// pipelined GET's time (on this VM, whose CPUID does not advertise an invariant TSC although
/// the kernel uses it, quanta fell back to it).
#[derive(Debug, Clone, Copy)]
enum CommandClock {
    /// Nanoseconds per tick, as a 32.32 fixed-point number.
    Tsc { scale: u64 },
    /// `Instant`s since `BASE`, in nanoseconds.
    Monotonic,
}

static BASE: std::sync::LazyLock<std::time::Instant> =
    std::sync::LazyLock::new(std::time::Instant::now);

fn command_clock() -> CommandClock {
    static CLOCK: std::sync::OnceLock<CommandClock> = std::sync::OnceLock::new();
    *CLOCK.get_or_init(|| {
        let source = "/sys/devices/system/clocksource/clocksource0/current_clocksource";
        let kernel_uses_tsc =
            std::fs::read_to_string(source).is_ok_and(|source| source.trim() == "tsc");
        if cfg!(target_arch = "x86_64") && kernel_uses_tsc {
            // 10 ms against the monotonic clock: an error below 1e-4.
            let (start, ticks) = (std::time::Instant::now(), rdtsc());
            while start.elapsed() < Duration::from_millis(10) {
                std::hint::spin_loop();
            }
            let (nanos, ticks) = (start.elapsed().as_nanos(), rdtsc().wrapping_sub(ticks));
            if ticks > 0 {
                let scale = ((nanos << 32) / u128::from(ticks)) as u64;
                return CommandClock::Tsc { scale };
            }
        }
        CommandClock::Monotonic
    })
}

/// The timestamp counter (0 where there is none).
#[inline]
#[allow(unsafe_code)]
fn rdtsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC reads a counter into registers; every x86_64 CPU has it and it has
        // no other effect.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        0
    }
}

/// A reading of the command clock, in its own units (see [`nanos_between`]); never 0.
#[inline]
pub fn clock_ticks() -> u64 {
    match command_clock() {
        CommandClock::Tsc { .. } => rdtsc().max(1),
        CommandClock::Monotonic => (BASE.elapsed().as_nanos() as u64).saturating_add(1),
    }
}

/// The nanoseconds between two [`clock_ticks`] readings (0 if `end` is not after `start`).
#[inline]
pub fn nanos_between(start: u64, end: u64) -> u64 {
    let ticks = end.saturating_sub(start);
    match command_clock() {
        CommandClock::Tsc { scale } => ((u128::from(ticks) * u128::from(scale)) >> 32) as u64,
        CommandClock::Monotonic => ticks,
    }
}

/// A reading of the command clock and the nanoseconds since `mark`, an earlier one (0 when
/// `mark` is 0: no earlier reading): [`clock_ticks`] and [`nanos_between`] in one look at the
/// clock's kind.
#[inline]
pub fn lap(mark: u64) -> (u64, u64) {
    match command_clock() {
        CommandClock::Tsc { scale } => {
            let now = rdtsc().max(1);
            let ticks = if mark == 0 {
                0
            } else {
                now.saturating_sub(mark)
            };
            (now, ((u128::from(ticks) * u128::from(scale)) >> 32) as u64)
        }
        CommandClock::Monotonic => {
            let now = (BASE.elapsed().as_nanos() as u64).saturating_add(1);
            let nanos = if mark == 0 {
                0
            } else {
                now.saturating_sub(mark)
            };
            (now, nanos)
        }
    }
}

/// The highest `used_memory` seen, sampled by the server every [`PEAK_PERIOD`] and by INFO.
#[derive(Debug, Default)]
pub struct Peak(AtomicU64);

/// How often the server samples its memory for [`Peak`].
pub const PEAK_PERIOD: Duration = Duration::from_millis(100);

impl Peak {
    /// Notes `used` bytes; the peak so far.
    pub fn note(&self, used: u64) -> u64 {
        self.0.fetch_max(used, Ordering::Relaxed).max(used)
    }

    /// Starts again from `used` (CONFIG RESETSTAT).
    pub fn reset(&self, used: u64) {
        self.0.store(used, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_clock_agrees_with_the_monotonic_clock() {
        // Whichever clock this machine gets: an interval it measures is the monotonic clock's,
        // within 5% (the TSC's scale is measured over 10 ms). A few tries, since a thread
        // descheduled between the two clocks' readings skews one try.
        clock_ticks(); // calibrates on first use
        let tries: Vec<(u64, u64)> = (0..5)
            .map(|_| {
                let (start, ticks) = (std::time::Instant::now(), clock_ticks());
                while start.elapsed() < Duration::from_millis(50) {
                    std::hint::spin_loop();
                }
                let measured = nanos_between(ticks, clock_ticks());
                (measured, start.elapsed().as_nanos() as u64)
            })
            .collect();
        assert!(
            tries
                .iter()
                .any(|&(measured, reference)| measured.abs_diff(reference) < reference / 20),
            "(command clock, monotonic clock) ns: {tries:?}"
        );
        let ticks = clock_ticks();
        assert_eq!(nanos_between(ticks, ticks), 0);
        let (now, nanos) = lap(0);
        assert!(now >= ticks);
        assert_eq!(nanos, 0, "no earlier reading: no time");
        let (later, nanos) = lap(now);
        assert!(later >= now);
        assert_eq!(nanos, nanos_between(now, later));
        assert_eq!(nanos_between(ticks + 1, ticks), 0, "never negative");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_process_and_machine_figures_are_read() {
        let memory = memory();
        assert!(memory.rss > 0 && memory.anonymous > 0 && memory.anonymous <= memory.rss);
        assert!(total_system_memory() > memory.rss);
        let spin: u64 = (0..5_000_000u64).fold(0, |a, b| a.wrapping_add(b * b));
        assert!(spin > 0);
        let cpu = cpu_time();
        assert!(cpu.user + cpu.system > Duration::ZERO);
    }

    #[test]
    fn the_command_clock_measures_time_that_passed() {
        let start = clock_ticks();
        std::thread::sleep(Duration::from_millis(2));
        let nanos = nanos_between(start, clock_ticks());
        assert!(nanos >= 2_000_000, "{nanos} ns");
        assert_eq!(nanos_between(clock_ticks(), start), 0);
    }

    #[test]
    fn the_peak_only_grows_until_reset() {
        let peak = Peak::default();
        assert_eq!(peak.note(10), 10);
        assert_eq!(peak.note(5), 10);
        peak.reset(3);
        assert_eq!(peak.note(1), 3);
    }
}
