//! Least privilege for `siteward run`. The daemon needs three capabilities and nothing
//! else of root: CAP_NET_ADMIN (TUN devices, addresses and routes over netlink),
//! CAP_NET_BIND_SERVICE (listeners and IKE on ports below 1024) and CAP_NET_RAW (ICMP and
//! ESP raw sockets, SO_BINDTODEVICE). The systemd unit runs it as the `siteward` user with
//! exactly those as ambient capabilities; as root it starts only with `--allow-root`.
//!
//! The three are kept for the whole run, not dropped after start: a reload or a commit may
//! start a tunnel, bind a relay on a low port or add a ping check at any time.
//!
//! Capabilities belong to each thread, and a thread starts with its creator's: [`confine`]
//! must run before the async runtime (or anything else) starts a thread.

use anyhow::Context;
use caps::{CapSet, Capability, CapsHashSet};

/// The capabilities the daemon uses; every other one is dropped.
pub const KEPT: [Capability; 3] = [
    Capability::CAP_NET_ADMIN,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_NET_RAW,
];

/// Refuses root without `--allow-root`, drops every capability but [`KEPT`] and sets
/// no_new_privs (the daemon never executes anything that should gain privileges).
pub fn confine(allow_root: bool) -> anyhow::Result<()> {
    let ids = nix::unistd::getresuid().context("reading the process's user ids")?;
    let any_root = [ids.real, ids.effective, ids.saved]
        .iter()
        .any(|uid| uid.is_root());
    refuse_root(any_root, allow_root)?;
    let current = CapState::read().context("reading the process's capabilities")?;
    plan(&current)
        .apply()
        .context("dropping the capabilities the daemon does not use")?;
    nix::sys::prctl::set_no_new_privs().context("setting no_new_privs")?;
    Ok(())
}

/// The error for root without `--allow-root`, or nothing.
fn refuse_root(any_root: bool, allow_root: bool) -> anyhow::Result<()> {
    if any_root && !allow_root {
        anyhow::bail!(
            "refusing to run as root: run `siteward run` as the `siteward` service user \
             (the systemd unit siteward.service does, with only CAP_NET_ADMIN, \
             CAP_NET_BIND_SERVICE and CAP_NET_RAW), or pass --allow-root to run as root \
             keeping only those capabilities"
        );
    }
    Ok(())
}

/// The effective capabilities, as the log shows them (`CAP_NET_ADMIN,...` or `none`).
pub fn describe_effective() -> String {
    match caps::read(None, CapSet::Effective) {
        Ok(set) => names(&set),
        Err(e) => format!("unknown ({e})"),
    }
}

fn names(set: &CapsHashSet) -> String {
    let mut names: Vec<String> = set.iter().map(|c| c.to_string()).collect();
    names.sort();
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(",")
    }
}

/// The calling thread's capability sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct CapState {
    effective: CapsHashSet,
    permitted: CapsHashSet,
    inheritable: CapsHashSet,
    ambient: CapsHashSet,
    bounding: CapsHashSet,
}

impl CapState {
    fn read() -> Result<CapState, caps::errors::CapsError> {
        Ok(CapState {
            effective: caps::read(None, CapSet::Effective)?,
            permitted: caps::read(None, CapSet::Permitted)?,
            inheritable: caps::read(None, CapSet::Inheritable)?,
            ambient: caps::read(None, CapSet::Ambient)?,
            bounding: caps::read(None, CapSet::Bounding)?,
        })
    }
}

/// What [`confine`] changes: each field `None` when that set stays as it is, so a daemon
/// that already has only [`KEPT`] (the systemd unit's case) makes no capset call at all.
#[derive(Debug, Default, PartialEq, Eq)]
struct Plan {
    /// Dropped from the bounding set (needs CAP_SETPCAP, so done first).
    bounding_drop: Vec<Capability>,
    ambient_drop: Vec<Capability>,
    inheritable: Option<CapsHashSet>,
    effective: Option<CapsHashSet>,
    permitted: Option<CapsHashSet>,
}

fn kept() -> CapsHashSet {
    KEPT.into_iter().collect()
}

/// The changes that leave only [`KEPT`] (those of them the process has) in every set.
/// Kept capabilities the process has are made effective, since the daemon uses them.
/// The bounding set can only shrink with CAP_SETPCAP; without it (an unprivileged start)
/// the extra entries stay, unreachable with no_new_privs and nothing else permitted.
fn plan(current: &CapState) -> Plan {
    let kept = kept();
    let sorted = |set: CapsHashSet| {
        let mut caps: Vec<Capability> = set.into_iter().collect();
        caps.sort_by_key(|c| c.index());
        caps
    };
    let changed = |now: &CapsHashSet, wanted: CapsHashSet| (*now != wanted).then_some(wanted);
    let permitted: CapsHashSet = current.permitted.intersection(&kept).copied().collect();
    let bounding_drop = if current.effective.contains(&Capability::CAP_SETPCAP) {
        sorted(current.bounding.difference(&kept).copied().collect())
    } else {
        Vec::new()
    };
    Plan {
        bounding_drop,
        ambient_drop: sorted(current.ambient.difference(&kept).copied().collect()),
        inheritable: changed(
            &current.inheritable,
            current.inheritable.intersection(&kept).copied().collect(),
        ),
        effective: changed(&current.effective, permitted.clone()),
        permitted: changed(&current.permitted, permitted),
    }
}

impl Plan {
    /// Applies the changes to the calling thread, in an order the kernel accepts:
    /// the bounding set while CAP_SETPCAP is still effective, the effective set before the
    /// permitted set it must stay within.
    fn apply(&self) -> Result<(), caps::errors::CapsError> {
        for cap in &self.bounding_drop {
            caps::drop(None, CapSet::Bounding, *cap)?;
        }
        for cap in &self.ambient_drop {
            caps::drop(None, CapSet::Ambient, *cap)?;
        }
        if let Some(set) = &self.inheritable {
            caps::set(None, CapSet::Inheritable, set)?;
        }
        if let Some(set) = &self.effective {
            caps::set(None, CapSet::Effective, set)?;
        }
        if let Some(set) = &self.permitted {
            caps::set(None, CapSet::Permitted, set)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(caps: &[Capability]) -> CapsHashSet {
        caps.iter().copied().collect()
    }

    #[test]
    fn root_is_refused_without_the_flag_with_a_way_out() {
        let message = refuse_root(true, false).unwrap_err().to_string();
        assert!(message.contains("refusing to run as root"), "{message}");
        assert!(message.contains("`siteward` service user"), "{message}");
        assert!(message.contains("--allow-root"), "{message}");
        refuse_root(true, true).unwrap();
        refuse_root(false, false).unwrap();
    }

    #[test]
    fn root_keeps_only_the_network_capabilities_everywhere() {
        let all = caps::all();
        let root = CapState {
            effective: all.clone(),
            permitted: all.clone(),
            inheritable: CapsHashSet::new(),
            ambient: CapsHashSet::new(),
            bounding: all.clone(),
        };
        let plan = plan(&root);
        assert_eq!(plan.effective, Some(kept()));
        assert_eq!(plan.permitted, Some(kept()));
        assert_eq!(plan.inheritable, None);
        assert!(plan.ambient_drop.is_empty());
        let mut remaining = set(&plan.bounding_drop);
        assert_eq!(remaining.len(), plan.bounding_drop.len(), "no duplicates");
        remaining.extend(KEPT);
        assert_eq!(
            remaining, all,
            "everything but KEPT leaves the bounding set"
        );
        assert!(KEPT.iter().all(|c| !plan.bounding_drop.contains(c)));
    }

    #[test]
    fn the_units_ambient_capabilities_need_no_change() {
        let unit = CapState {
            effective: kept(),
            permitted: kept(),
            inheritable: kept(),
            ambient: kept(),
            bounding: kept(),
        };
        assert_eq!(plan(&unit), Plan::default());
        assert_eq!(plan(&CapState::default()), Plan::default());
    }

    #[test]
    fn extra_ambient_capabilities_are_dropped_without_setpcap() {
        let granted = set(&[
            Capability::CAP_NET_ADMIN,
            Capability::CAP_SYS_ADMIN,
            Capability::CAP_DAC_OVERRIDE,
        ]);
        let state = CapState {
            effective: granted.clone(),
            permitted: granted.clone(),
            inheritable: granted.clone(),
            ambient: granted,
            bounding: caps::all(),
        };
        let plan = plan(&state);
        let net_admin = set(&[Capability::CAP_NET_ADMIN]);
        assert_eq!(plan.effective.as_ref(), Some(&net_admin));
        assert_eq!(plan.permitted.as_ref(), Some(&net_admin));
        assert_eq!(plan.inheritable.as_ref(), Some(&net_admin));
        assert_eq!(
            plan.ambient_drop,
            vec![Capability::CAP_DAC_OVERRIDE, Capability::CAP_SYS_ADMIN]
        );
        assert!(
            plan.bounding_drop.is_empty(),
            "without CAP_SETPCAP the bounding set cannot shrink"
        );
    }

    #[test]
    fn a_kept_capability_permitted_but_not_effective_is_raised() {
        let state = CapState {
            permitted: set(&[Capability::CAP_NET_RAW]),
            ..CapState::default()
        };
        let plan = plan(&state);
        assert_eq!(plan.effective, Some(set(&[Capability::CAP_NET_RAW])));
        assert_eq!(plan.permitted, None);
    }

    #[test]
    fn names_are_sorted_and_none_is_said() {
        assert_eq!(names(&CapsHashSet::new()), "none");
        assert_eq!(
            names(&kept()),
            "CAP_NET_ADMIN,CAP_NET_BIND_SERVICE,CAP_NET_RAW"
        );
    }
}
