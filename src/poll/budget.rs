//! The CPU budget of a live poller (`--max-cpu`): what each kind of dump costs, and
//! from that, how often a full dump fits and whether the SYN_RECV dump joins the fast
//! lane between them.
//!
//! A full dump walks every socket on the host, so its cost grows with the socket count;
//! the fast lane (a LISTEN-only dump, the counters, `/proc/net/sockstat`) costs what
//! the listeners cost. When a full dump every interval would take more than the
//! budget, full dumps are spaced out (`cost / budget`, never closer than the interval)
//! and the fast lane fills the ticks between them. The fast lane runs at every tick
//! whatever it costs (it is what keeps a new listener or a full accept queue visible).
//! The SYN_RECV-only dump joins it at every tick when it fits in half the budget with
//! the rest of the lane, else every few ticks, as often as a quarter of the budget
//! allows; the full dumps get what is left, and never less than a quarter.
//!
//! The lane's exact lookups, one per kernel destroy event ([`Budget::lane_lookups`]),
//! get what that half of the budget leaves over after the rest of the lane and a
//! SYN_RECV dump at every tick, at their own measured cost each: never fewer than
//! [`LANE_LOOKUPS_MIN`] a tick, never more than [`LANE_LOOKUPS_MAX`], which is also
//! what a tick takes without a budget. What they cost counts with the lane's cost
//! when the full dumps are spaced out.
//!
//! What is counted is the whole process's work on the polls, not the poller's alone:
//! the poller's own CPU time for each dump, diff and analysis (thread CPU time), and
//! what its consumer spent taking each update in ([`Part::FullTakenIn`],
//! [`Part::LaneTakenIn`]), measured the same way on the consumer's threads: for
//! `--watch` and `--serve`, their thread's time from being handed a poll to asking
//! for the next; for the view, its thread taking in a poll and drawing the frame after
//! it, and its worker sorting and filtering the connections table, counting the
//! Groups tab and freeing the table it replaced (the worker cannot tell a sort a key
//! asked for from one a poll did: both count). A full dump's cost is its own plus its
//! taking in, a lane's likewise, each the mean over the polls taken in since the last
//! tick. What no poll causes (a frame drawn for a key, a scrape) is not counted:
//! spacing full dumps would not make it cheaper.
//!
//! Pure: costs come in as measured CPU time, the clock as [`Instant`]s. Nothing here
//! reads a clock or the kernel.

use std::time::{Duration, Instant};

/// How much each new measurement moves a smoothed cost: one slow dump (the host was
/// busy, the table grew for a moment) does not halve the rate of full dumps at once.
const SMOOTHING: f64 = 0.3;

/// The share of the budget the full dumps keep however much the fast lane costs, so
/// that the connections table is still refreshed on a host with very many listeners.
const FULL_SHARE_FLOOR: f64 = 0.25;
/// The share of the budget the SYN_RECV dumps get at least, however much the rest of
/// the fast lane costs.
const SYN_RECV_SHARE_FLOOR: f64 = 0.25;
/// The share of the budget the fast lane may take with the SYN_RECV dump at every tick.
const LANE_SHARE: f64 = 0.5;

/// The fewest destroy events a fast-lane tick resolves, however short the interval or
/// the budget.
pub const LANE_LOOKUPS_MIN: usize = 64;
/// The most destroy events a fast-lane tick resolves: as many as the poller holds
/// (16k, about 40 ms of CPU at 2.5 µs a lookup), so that without a budget every event
/// received is resolved at the next tick.
pub const LANE_LOOKUPS_MAX: usize = 16 * 1024;
/// What one exact lookup costs until the lane has measured it: the dearer of the two
/// costs measured in a lab namespace (2.5 µs when it finds a remnant, 2.0 when not).
const LOOKUP_COST_GUESS: f64 = 2.5e-6;
/// The least a lookup is taken to cost, so that a tick whose few lookups measured next
/// to nothing does not allow a burst of them.
const LOOKUP_COST_FLOOR: f64 = 1.0e-6;

/// What one tick of the poller does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Dump every socket, diff against the previous full dump.
    Full,
    /// Only the fast lane: listeners, counters, sockstat, and the SYN_RECV sockets
    /// when `syn_recv`.
    Lanes { syn_recv: bool },
}

/// What a measured cost was spent on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Full,
    /// The LISTEN-only dump with the counters and sockstat.
    Listeners,
    SynRecv,
    /// What the consumer spent taking in one full poll, on its own threads.
    FullTakenIn,
    /// What the consumer spent taking in one poll of the fast lane.
    LaneTakenIn,
}

/// How often each part is read at an interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cadence {
    pub full_every: Duration,
    /// At most `full_every`: a full dump reads SYN_RECV too.
    pub syn_recv_every: Duration,
}

/// The budget and the smoothed cost of each part.
#[derive(Debug, Clone)]
pub struct Budget {
    /// A fraction of one core; none for no budget (`--max-cpu 0`).
    share: Option<f64>,
    full: Smoothed,
    listeners: Smoothed,
    syn_recv: Smoothed,
    full_taken_in: Smoothed,
    lane_taken_in: Smoothed,
    /// The fast lane's lookups: their CPU time a tick, and one lookup's.
    lookups: Smoothed,
    lookup_each: Smoothed,
    last_full: Option<Instant>,
    last_syn_recv: Option<Instant>,
}

impl Budget {
    /// `percent` of one core; 0 for none.
    pub fn new(percent: f64) -> Budget {
        Budget {
            share: (percent > 0.0 && percent.is_finite()).then_some(percent / 100.0),
            full: Smoothed::default(),
            listeners: Smoothed::default(),
            syn_recv: Smoothed::default(),
            full_taken_in: Smoothed::default(),
            lane_taken_in: Smoothed::default(),
            lookups: Smoothed::default(),
            lookup_each: Smoothed::default(),
            last_full: None,
            last_syn_recv: None,
        }
    }

    /// Takes in what a part cost, in CPU time.
    pub fn spent(&mut self, part: Part, cpu: Duration) {
        match part {
            Part::Full => self.full.add(cpu),
            Part::Listeners => self.listeners.add(cpu),
            Part::SynRecv => self.syn_recv.add(cpu),
            Part::FullTakenIn => self.full_taken_in.add(cpu),
            Part::LaneTakenIn => self.lane_taken_in.add(cpu),
        }
    }

    /// Takes in what a fast-lane tick's `count` lookups cost, in CPU time (a tick
    /// without any counts too: the lane's cost falls with the churn).
    pub fn lookups_spent(&mut self, count: usize, cpu: Duration) {
        self.lookups.add(cpu);
        if count > 0 {
            self.lookup_each.add(cpu.div_f64(count as f64));
        }
    }

    /// How many destroy events the fast lane may resolve at a tick at this interval,
    /// one lookup each: what half the budget leaves over after the rest of the lane
    /// (the listener dump, counters and sockstat, taking the lane in) and a SYN_RECV
    /// dump, at a lookup's measured cost; within [`LANE_LOOKUPS_MIN`] and
    /// [`LANE_LOOKUPS_MAX`], the most without a budget.
    pub fn lane_lookups(&self, interval: Duration) -> usize {
        let Some(share) = self.share else {
            return LANE_LOOKUPS_MAX;
        };
        let lane = self.listeners.value.unwrap_or(0.0)
            + self.lane_taken_in.value.unwrap_or(0.0)
            + self.syn_recv.value.unwrap_or(0.0);
        let left = share * LANE_SHARE * interval.as_secs_f64() - lane;
        let each = self
            .lookup_each
            .value
            .unwrap_or(LOOKUP_COST_GUESS)
            .max(LOOKUP_COST_FLOOR);
        // A negative or NaN count is none; a huge one saturates.
        let fit = (left / each).floor().max(0.0) as usize;
        fit.clamp(LANE_LOOKUPS_MIN, LANE_LOOKUPS_MAX)
    }

    /// A full dump was taken at `at` (SYN_RECV with it).
    pub fn full_taken(&mut self, at: Instant) {
        self.last_full = Some(at);
        self.last_syn_recv = Some(at);
    }

    /// A full dump started at `at` failed. It cost what a dump costs, so the next one
    /// waits its turn as after a dump taken, with the fast lane between: a dump that
    /// keeps failing is not retried at full cost every tick, over the budget. Before
    /// any full dump has been taken the lanes have nothing to build on, so the next
    /// tick tries again.
    pub fn full_failed(&mut self, at: Instant) {
        if self.last_full.is_some() {
            self.last_full = Some(at);
        }
    }

    /// A SYN_RECV-only dump was taken at `at`.
    pub fn syn_recv_taken(&mut self, at: Instant) {
        self.last_syn_recv = Some(at);
    }

    /// The time between full dumps at this interval: the interval itself when a full
    /// dump every tick fits the budget, else as many ticks as the budget needs.
    pub fn full_every(&self, interval: Duration) -> Duration {
        self.cadence(interval).full_every
    }

    /// How often full dumps and SYN_RECV dumps fit the budget at this interval.
    pub fn cadence(&self, interval: Duration) -> Cadence {
        let every_tick = Cadence {
            full_every: interval,
            syn_recv_every: interval,
        };
        let (Some(share), Some(full)) = (self.share, self.full.value) else {
            return every_tick;
        };
        let full = full + self.full_taken_in.value.unwrap_or(0.0);
        let seconds = interval.as_secs_f64();
        if seconds <= 0.0 || full / share <= seconds {
            return every_tick;
        }
        // Whole ticks that give `cost` at most `allowed` of a core.
        let ticks = |cost: f64, allowed: f64| (cost / allowed / seconds).ceil().max(1.0);
        let lane = self.listeners.value.unwrap_or(0.0)
            + self.lookups.value.unwrap_or(0.0)
            + self.lane_taken_in.value.unwrap_or(0.0);
        let listeners = (lane / seconds).min(share);
        let syn_recv = self.syn_recv.value.unwrap_or(0.0);
        let syn_allowed = (share * LANE_SHARE - listeners).max(share * SYN_RECV_SHARE_FLOOR);
        let syn_ticks = ticks(syn_recv, syn_allowed);
        let syn_share = syn_recv / (syn_ticks * seconds);
        let left = (share - listeners - syn_share).max(share * FULL_SHARE_FLOOR);
        let full_ticks = ticks(full, left);
        Cadence {
            full_every: interval.mul_f64(full_ticks),
            syn_recv_every: interval.mul_f64(syn_ticks.min(full_ticks)),
        }
    }

    /// What the next tick, at `now`, does.
    pub fn plan(&self, now: Instant, interval: Duration) -> Plan {
        let Some(last_full) = self.last_full else {
            return Plan::Full;
        };
        let cadence = self.cadence(interval);
        if cadence.full_every <= interval {
            return Plan::Full;
        }
        // A tick that comes a little early (a slow poll before it) still counts.
        let due = |last: Instant, every: Duration| {
            now.saturating_duration_since(last) >= every.saturating_sub(interval / 4)
        };
        if due(last_full, cadence.full_every) {
            return Plan::Full;
        }
        Plan::Lanes {
            syn_recv: self
                .last_syn_recv
                .is_none_or(|last| due(last, cadence.syn_recv_every)),
        }
    }
}

/// An exponentially smoothed cost in seconds; none before the first measurement.
#[derive(Debug, Clone, Copy, Default)]
struct Smoothed {
    value: Option<f64>,
}

impl Smoothed {
    fn add(&mut self, cost: Duration) {
        let cost = cost.as_secs_f64();
        self.value = Some(match self.value {
            Some(value) => value + SMOOTHING * (cost - value),
            None => cost,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_millis(1000);

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    #[test]
    fn the_first_tick_is_a_full_dump_whatever_the_budget() {
        assert_eq!(Budget::new(1.0).plan(Instant::now(), INTERVAL), Plan::Full);
    }

    #[test]
    fn a_full_dump_that_fits_the_budget_is_taken_every_interval() {
        let mut budget = Budget::new(20.0);
        budget.spent(Part::Full, ms(150));
        assert_eq!(budget.full_every(INTERVAL), INTERVAL);
        let start = Instant::now();
        budget.full_taken(start);
        assert_eq!(budget.plan(start + INTERVAL, INTERVAL), Plan::Full);
    }

    #[test]
    fn a_full_dump_costing_a_core_for_800ms_comes_every_four_seconds_at_twenty_percent() {
        let mut budget = Budget::new(20.0);
        budget.spent(Part::Full, ms(800));
        assert_eq!(budget.full_every(INTERVAL), ms(4000));
        let start = Instant::now();
        budget.full_taken(start);
        for tick in 1..4 {
            assert_eq!(
                budget.plan(start + INTERVAL * tick, INTERVAL),
                Plan::Lanes { syn_recv: true },
                "tick {tick}"
            );
        }
        assert_eq!(budget.plan(start + INTERVAL * 4, INTERVAL), Plan::Full);
    }

    #[test]
    fn a_full_dump_that_failed_is_tried_again_in_its_turn_with_lanes_between() {
        let mut budget = Budget::new(20.0);
        budget.spent(Part::Full, ms(800));
        let start = Instant::now();
        budget.full_failed(start);
        assert_eq!(
            budget.plan(start + INTERVAL, INTERVAL),
            Plan::Full,
            "with no dump taken yet, the next tick tries again"
        );
        budget.full_taken(start);
        let failed = start + INTERVAL * 4;
        assert_eq!(budget.plan(failed, INTERVAL), Plan::Full);
        budget.spent(Part::Full, ms(800));
        budget.full_failed(failed);
        for tick in 1..4 {
            assert_eq!(
                budget.plan(failed + INTERVAL * tick, INTERVAL),
                Plan::Lanes { syn_recv: true },
                "tick {tick} after the failed dump"
            );
        }
        assert_eq!(budget.plan(failed + INTERVAL * 4, INTERVAL), Plan::Full);
    }

    #[test]
    fn what_the_fast_lane_costs_is_left_out_of_the_full_dumps_share() {
        let mut budget = Budget::new(20.0);
        budget.spent(Part::Full, ms(800));
        // 10% of a core every tick for the lanes: the full dumps get the other 10%.
        budget.spent(Part::Listeners, ms(60));
        budget.spent(Part::SynRecv, ms(40));
        assert_eq!(
            budget.cadence(INTERVAL),
            Cadence {
                full_every: ms(8000),
                syn_recv_every: INTERVAL
            }
        );
    }

    #[test]
    fn a_syn_recv_dump_too_dear_for_every_tick_comes_every_few_ticks() {
        let mut budget = Budget::new(20.0);
        budget.spent(Part::Full, ms(800));
        budget.spent(Part::Listeners, ms(20));
        // Half the budget less the listeners leaves 8%: 150 ms fits every 2 s.
        budget.spent(Part::SynRecv, ms(150));
        assert_eq!(
            budget.cadence(INTERVAL),
            Cadence {
                full_every: ms(8000),
                syn_recv_every: ms(2000)
            }
        );
        let start = Instant::now();
        budget.full_taken(start);
        assert_eq!(
            budget.plan(start + INTERVAL, INTERVAL),
            Plan::Lanes { syn_recv: false }
        );
        assert_eq!(
            budget.plan(start + INTERVAL * 2, INTERVAL),
            Plan::Lanes { syn_recv: true }
        );
        budget.syn_recv_taken(start + INTERVAL * 2);
        assert_eq!(
            budget.plan(start + INTERVAL * 3, INTERVAL),
            Plan::Lanes { syn_recv: false }
        );
    }

    #[test]
    fn listeners_that_take_the_whole_lane_share_still_leave_syn_recv_a_quarter() {
        let mut budget = Budget::new(20.0);
        budget.spent(Part::Full, ms(800));
        budget.spent(Part::Listeners, ms(100));
        budget.spent(Part::SynRecv, ms(50));
        // SYN_RECV gets 5%: 50 ms every second. The full dumps get 5%: every 16 s.
        assert_eq!(
            budget.cadence(INTERVAL),
            Cadence {
                full_every: ms(16000),
                syn_recv_every: INTERVAL
            }
        );
    }

    #[test]
    fn no_budget_means_a_full_dump_every_interval_however_slow() {
        let mut budget = Budget::new(0.0);
        budget.spent(Part::Full, ms(5000));
        assert_eq!(budget.full_every(INTERVAL), INTERVAL);
        let start = Instant::now();
        budget.full_taken(start);
        assert_eq!(budget.plan(start + INTERVAL, INTERVAL), Plan::Full);
        // A tick that comes early after a late poll is a full one too.
        assert_eq!(budget.plan(start + ms(10), INTERVAL), Plan::Full);
    }

    #[test]
    fn one_slow_dump_moves_the_spacing_only_part_of_the_way() {
        let mut budget = Budget::new(20.0);
        budget.spent(Part::Full, ms(100));
        budget.spent(Part::Full, ms(1100));
        // 100 + 0.3 × 1000 = 400 ms: two ticks, not six.
        assert_eq!(budget.full_every(INTERVAL), ms(2000));
    }

    #[test]
    fn a_full_dump_that_fits_alone_is_spaced_once_taking_it_in_is_counted() {
        let mut budget = Budget::new(20.0);
        budget.spent(Part::Full, ms(150));
        assert_eq!(budget.full_every(INTERVAL), INTERVAL, "15% of a core fits");
        // The view spends 60 ms more on each: 21%, over the budget by a little.
        budget.spent(Part::FullTakenIn, ms(60));
        assert_eq!(budget.full_every(INTERVAL), ms(2000));
        let start = Instant::now();
        budget.full_taken(start);
        assert_eq!(
            budget.plan(start + INTERVAL, INTERVAL),
            Plan::Lanes { syn_recv: true }
        );
        assert_eq!(budget.plan(start + INTERVAL * 2, INTERVAL), Plan::Full);
    }

    #[test]
    fn taking_a_full_dump_in_that_still_fits_keeps_it_every_interval() {
        let mut budget = Budget::new(20.0);
        budget.spent(Part::Full, ms(150));
        budget.spent(Part::FullTakenIn, ms(40));
        // 190 ms a second: within the budget.
        assert_eq!(budget.full_every(INTERVAL), INTERVAL);
    }

    #[test]
    fn taking_the_fast_lane_in_is_left_out_of_the_full_dumps_share() {
        let mut budget = Budget::new(20.0);
        budget.spent(Part::Full, ms(800));
        budget.spent(Part::Listeners, ms(30));
        budget.spent(Part::LaneTakenIn, ms(30));
        budget.spent(Part::SynRecv, ms(40));
        // 6% for the lane, 4% for SYN_RECV: the full dumps get 10%, every 8 s.
        assert_eq!(
            budget.cadence(INTERVAL),
            Cadence {
                full_every: ms(8000),
                syn_recv_every: INTERVAL
            }
        );
    }

    #[test]
    fn taking_in_counts_for_nothing_without_a_budget() {
        let mut budget = Budget::new(0.0);
        budget.spent(Part::Full, ms(150));
        budget.spent(Part::FullTakenIn, ms(900));
        assert_eq!(budget.full_every(INTERVAL), INTERVAL);
    }

    /// A lane that costs 90 ms of CPU a tick with its SYN_RECV dump and the taking in.
    fn a_lane_of_90ms(percent: f64) -> Budget {
        let mut budget = Budget::new(percent);
        budget.spent(Part::Full, ms(800));
        budget.spent(Part::Listeners, ms(50));
        budget.spent(Part::LaneTakenIn, ms(10));
        budget.spent(Part::SynRecv, ms(30));
        budget
    }

    fn near(count: usize, wanted: usize) -> bool {
        count.abs_diff(wanted) <= 1
    }

    #[test]
    fn the_lookups_get_what_half_the_budget_leaves_after_the_rest_of_the_lane() {
        let mut budget = a_lane_of_90ms(20.0);
        // 1000 lookups took 2.5 ms: 2.5 µs each. Half of 20% is 100 ms a second, the
        // lane takes 90: 10 ms is left, 4000 lookups.
        budget.lookups_spent(1000, Duration::from_micros(2500));
        let lookups = budget.lane_lookups(INTERVAL);
        assert!(near(lookups, 4000), "{lookups}");
        // A budget twice as large leaves 110 ms: 44,000, more than a tick takes.
        let mut larger = a_lane_of_90ms(40.0);
        larger.lookups_spent(1000, Duration::from_micros(2500));
        assert_eq!(larger.lane_lookups(INTERVAL), LANE_LOOKUPS_MAX);
        // At a tenth of the interval the lane's cost stays: nothing is left.
        assert_eq!(budget.lane_lookups(ms(100)), LANE_LOOKUPS_MIN);
    }

    #[test]
    fn dearer_lookups_make_fewer_fit() {
        let mut budget = a_lane_of_90ms(20.0);
        budget.lookups_spent(1000, Duration::from_micros(5000));
        let lookups = budget.lane_lookups(INTERVAL);
        assert!(near(lookups, 2000), "{lookups}");
        // Until the lane has measured one, a lookup is taken to cost 2.5 µs.
        let unmeasured = a_lane_of_90ms(20.0).lane_lookups(INTERVAL);
        assert!(near(unmeasured, 4000), "{unmeasured}");
        // A tick without lookups measures none: the cost each stays.
        budget.lookups_spent(0, Duration::ZERO);
        let after = budget.lane_lookups(INTERVAL);
        assert!(near(after, 2000), "{after}");
    }

    #[test]
    fn a_lane_over_its_half_of_the_budget_still_resolves_the_fewest_lookups() {
        let budget = a_lane_of_90ms(10.0);
        assert_eq!(budget.lane_lookups(INTERVAL), LANE_LOOKUPS_MIN);
    }

    #[test]
    fn without_a_budget_a_tick_resolves_as_many_lookups_as_the_poller_holds() {
        let mut budget = a_lane_of_90ms(0.0);
        budget.lookups_spent(1000, Duration::from_micros(2500));
        assert_eq!(budget.lane_lookups(INTERVAL), LANE_LOOKUPS_MAX);
        assert_eq!(budget.lane_lookups(ms(50)), LANE_LOOKUPS_MAX);
    }

    #[test]
    fn what_the_lookups_cost_is_left_out_of_the_full_dumps_share() {
        let mut budget = Budget::new(20.0);
        budget.spent(Part::Full, ms(800));
        budget.spent(Part::Listeners, ms(20));
        budget.spent(Part::SynRecv, ms(40));
        // Without lookups the full dumps get 14%: every 6 s.
        assert_eq!(budget.full_every(INTERVAL), ms(6000));
        // 30 ms of lookups a tick leave them 11%: every 8 s.
        budget.lookups_spent(12_000, ms(30));
        assert_eq!(budget.full_every(INTERVAL), ms(8000));
    }

    #[test]
    fn the_lanes_never_take_the_full_dumps_whole_share() {
        let mut budget = Budget::new(20.0);
        budget.spent(Part::Full, ms(400));
        budget.spent(Part::Listeners, ms(500));
        // A quarter of the budget (5%) stays for full dumps: 400 ms / 5% = 8 s.
        assert_eq!(budget.full_every(INTERVAL), ms(8000));
    }
}
