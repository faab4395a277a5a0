//! The planted bugs as a regression suite: every bug of the catalogue (`sim/planted.toml`)
//! is swept from seed 0 until a seed fails, and must fail with its expected invariant (not
//! any failure: a crash or another checker does not count) within its seed budget. Prints
//! seeds-to-find per bug, so the figures can be tracked over time.

use super::{run_seeds, SimArgs, SweepOptions};
use agora_sim::faults::Profile;
use anyhow::Context;
use serde::Deserialize;
use std::path::Path;

/// The catalogue file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Catalogue {
    bug: Vec<Entry>,
}

/// One planted bug and what finding it means.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    /// The bug's name (`agora_seams::planted::Bug::name`).
    name: String,
    /// The invariant the simulator must report.
    expect: String,
    /// Seeds 0..budget_seeds are swept at most.
    budget_seeds: u64,
    /// Seeds-to-find last measured (the lowest failing seed + 1), for the record.
    seeds_to_find: u64,
    /// Replication factor of the simulated cluster (default 1).
    #[serde(default = "one")]
    replication_factor: usize,
    /// The fault profile swept, as `--profile` names it (default `swarm`).
    #[serde(default)]
    profile: Option<String>,
    /// The bug whose defence stops this one first, when sweeps do not find it alone (the
    /// suite skips it and says so).
    #[serde(default)]
    masked_by: Option<String>,
    /// Why no fault can reach the defence this bug switches off (another part of the design
    /// keeps the fault from ever arising): the suite skips it and says why.
    #[serde(default)]
    unreachable: Option<String>,
}

fn one() -> usize {
    1
}

/// How one bug's sweep ended.
enum Verdict {
    /// Found with the expected invariant at this many seeds; the earlier seeds that failed
    /// only with other checkers (a bug often breaks several things).
    Found(u64, Vec<u64>),
    /// The first failing seed reported something else.
    Other { seed: u64, invariants: Vec<String> },
    /// No seed of the budget failed.
    Missed,
}

/// Sweeps every bug of `catalogue` (or those named in `only`); true if each was found as
/// expected within its budget.
pub fn run(catalogue: &Path, jobs: usize, only: &[String]) -> anyhow::Result<bool> {
    anyhow::ensure!(
        agora_seams::planted::CAN_PLANT,
        "this agora-sim has no planted bugs: build it with --features planted"
    );
    let text = std::fs::read_to_string(catalogue)
        .with_context(|| format!("cannot read {}", catalogue.display()))?;
    let cat: Catalogue = toml::from_str(&text)
        .with_context(|| format!("{} is not a catalogue", catalogue.display()))?;
    let entries: Vec<&Entry> = cat
        .bug
        .iter()
        .filter(|e| only.is_empty() || only.contains(&e.name))
        .collect();
    anyhow::ensure!(!entries.is_empty(), "no bug of the catalogue was chosen");
    let mut all_found = true;
    for (k, entry) in entries.iter().enumerate() {
        if let Some(by) = &entry.masked_by {
            println!(
                "[{} of {}] skipped: {} is masked by {by} (not found alone in {} seeds when measured)",
                k + 1,
                entries.len(),
                entry.name,
                entry.budget_seeds
            );
            continue;
        }
        if let Some(why) = &entry.unreachable {
            println!(
                "[{} of {}] skipped: {} cannot be reached: {why}",
                k + 1,
                entries.len(),
                entry.name
            );
            continue;
        }
        let started = crate::shims::wall_secs();
        let verdict = sweep_one(entry, jobs)?;
        let wall = crate::shims::wall_secs() - started;
        let line = match &verdict {
            Verdict::Found(n, others) => format!(
                "found: {} as {} at {n} seeds (budget {}, last measured {}; seeds failing only with other checkers first: {others:?})",
                entry.name, entry.expect, entry.budget_seeds, entry.seeds_to_find
            ),
            Verdict::Other { seed, invariants } => format!(
                "WRONG: {} made seed {seed} fail with {invariants:?}, not {}",
                entry.name, entry.expect
            ),
            Verdict::Missed => format!(
                "MISSED: {} not found in {} seeds",
                entry.name, entry.budget_seeds
            ),
        };
        all_found &= matches!(verdict, Verdict::Found(..));
        println!("[{} of {}] {line} in {wall:.0} s", k + 1, entries.len());
    }
    Ok(all_found)
}

/// Sweeps `entry`'s bug from seed 0 until a seed fails with the expected invariant (in
/// rounds of `jobs` seeds).
fn sweep_one(entry: &Entry, jobs: usize) -> anyhow::Result<Verdict> {
    let bug = super::parse_bug(&entry.name).map_err(|e| anyhow::anyhow!(e))?;
    let profile = match &entry.profile {
        None => Profile::Swarm,
        Some(name) => <Profile as clap::ValueEnum>::from_str(name, true).map_err(|e| {
            anyhow::anyhow!("bug {}: profile {name:?} is not a profile: {e}", entry.name)
        })?,
    };
    let sim = SimArgs {
        profile,
        nodes: 3,
        duration: 30,
        heal: 90,
        shoppers: 6,
        skip_faults: Vec::new(),
        replication_factor: entry.replication_factor,
        planted: Some(bug),
    };
    // Every seed of a round runs (a failure does not cut the round short).
    let opts = SweepOptions {
        jobs,
        twice: false,
        first: false,
    };
    let round = jobs.max(1) as u64;
    let mut others = Vec::new();
    let mut first_other = None;
    let mut from = 0;
    while from < entry.budget_seeds {
        let to = (from + round).min(entry.budget_seeds);
        let mut results = run_seeds(&sim, (from, to), &opts);
        results.sort_by_key(|s| s.seed);
        for failed in results.iter().filter(|s| !s.violations.is_empty()) {
            let invariants: Vec<String> = failed.violations.iter().map(|v| v.0.clone()).collect();
            if invariants.contains(&entry.expect) {
                return Ok(Verdict::Found(failed.seed + 1, others));
            }
            others.push(failed.seed);
            first_other.get_or_insert((failed.seed, invariants));
        }
        from = to;
    }
    Ok(match first_other {
        Some((seed, invariants)) => Verdict::Other { seed, invariants },
        None => Verdict::Missed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_names_every_planted_bug_once() {
        let text = include_str!("../planted.toml");
        let cat: Catalogue = toml::from_str(text).expect("the catalogue parses");
        let mut names: Vec<&str> = cat.bug.iter().map(|e| e.name.as_str()).collect();
        names.sort_unstable();
        let mut all: Vec<&str> = agora_seams::planted::Bug::ALL
            .iter()
            .map(|b| b.name())
            .collect();
        all.sort_unstable();
        assert_eq!(names, all);
        for e in &cat.bug {
            if let Some(p) = &e.profile {
                let parsed = <Profile as clap::ValueEnum>::from_str(p, true);
                assert!(parsed.is_ok(), "{}: {p:?} is not a profile", e.name);
            }
            if let Some(by) = &e.masked_by {
                assert!(
                    names.contains(&by.as_str()),
                    "{} is masked by an unknown bug",
                    e.name
                );
                continue;
            }
            if e.unreachable.is_some() {
                continue;
            }
            assert!(
                e.seeds_to_find <= e.budget_seeds,
                "{}: measured {} seeds, budget {}",
                e.name,
                e.seeds_to_find,
                e.budget_seeds
            );
        }
    }
}
