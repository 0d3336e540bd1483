//! `Reachability`: what a node knows about one of its addresses as peers observe it (see
//! `i6p_net::reach`), as a frozen value with named fields.

use i6p_net::addr::format_addr;
use i6p_net::reach::{AddrReach, Mapping, ReachStatus};
use pyo3::prelude::*;

/// One of the node's addresses as its peers observe it, and what dial-backs found there.
#[pyclass(frozen, module = "i6p._core")]
pub(crate) struct Reachability(AddrReach);

impl From<AddrReach> for Reachability {
    fn from(r: AddrReach) -> Self {
        Self(r)
    }
}

#[pymethods]
impl Reachability {
    /// The address, as peers observe it ("[2001:db8::1]:4433", "203.0.113.5:40001").
    #[getter]
    fn addr(&self) -> String {
        format_addr(&self.0.addr)
    }

    /// "public" (a peer's dial-back from a port we never sent to got through), "filtered"
    /// (dial-backs did not get through), or "unknown" (none answered yet).
    #[getter]
    fn status(&self) -> &'static str {
        match self.0.status {
            ReachStatus::Public => "public",
            ReachStatus::Filtered => "filtered",
            ReachStatus::Unknown => "unknown",
        }
    }

    /// "eim" (every peer sees the same port: endpoint-independent mapping, or no NAT),
    /// "edm" (peers see different ports: endpoint-dependent mapping), or "unknown".
    #[getter]
    fn mapping(&self) -> &'static str {
        match self.0.mapping {
            Mapping::Independent => "eim",
            Mapping::Dependent => "edm",
            Mapping::Unknown => "unknown",
        }
    }

    /// Distinct peers that report this address now.
    #[getter]
    fn reporters(&self) -> usize {
        self.0.reporters
    }

    /// True once two or more peers report it.
    #[getter]
    fn trusted(&self) -> bool {
        self.0.trusted
    }

    /// Helpers whose dial-back reached this address.
    #[getter]
    fn reached(&self) -> usize {
        self.0.reached
    }

    /// Helpers whose dial-back did not.
    #[getter]
    fn unreached(&self) -> usize {
        self.0.unreached
    }

    fn __eq__(&self, other: &Self) -> bool {
        self.0 == other.0
    }

    fn __repr__(&self) -> String {
        format!(
            "Reachability(addr='{}', status='{}', mapping='{}', reporters={}, trusted={}, \
             reached={}, unreached={})",
            self.addr(),
            self.status(),
            self.mapping(),
            self.0.reporters,
            if self.0.trusted { "True" } else { "False" },
            self.0.reached,
            self.0.unreached,
        )
    }
}
