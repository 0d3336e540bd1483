//! A node's reachability: what its peers observe (address reflection) and what their
//! dial-backs found (see `crate::reach` and `crate::dialback`).

use super::{Node, NodeConfig};
use crate::error::Result;
use crate::reach::{AddrReach, Reach, CAPABILITY};
use crate::session::Protocols;
use i6p_core::Identity;
use std::sync::Arc;

/// The node's reflections for the socket of `endpoint`, and the dial-back helper served on
/// `protocols`, announced in the HELLO of `config` (if there is room for it).
pub(super) fn start(
    identity: &Identity,
    endpoint: &quinn::Endpoint,
    config: &mut NodeConfig,
    protocols: &Protocols,
) -> Result<Arc<Reach>> {
    let caps = &mut config.capabilities;
    if caps.len() < i6p_core::hello::MAX_CAPABILITIES
        && !caps.iter().any(|(k, _)| k == CAPABILITY.0)
    {
        caps.push((CAPABILITY.0.into(), CAPABILITY.1.into()));
    }
    let reach = Reach::new(
        endpoint.local_addr()?,
        config.limits.max_dial_backs,
        config.dial_back,
    );
    crate::dialback::register(protocols, identity, reach.clone())?;
    Ok(reach)
}

impl Node {
    /// This node's addresses as its peers observe them, the most reported first: how many
    /// peers report each (trusted from two), the mapping of its IP (independent, or
    /// endpoint-dependent when peers see different ports), and whether dial-backs reached it
    /// (public), did not (filtered), or none answered yet (unknown). Moving to a new socket
    /// (`rebind`) starts this afresh.
    pub fn reachability(&self) -> Vec<AddrReach> {
        self.inner.reach.report()
    }

    /// True when some address peers agree on (two or more report it) was reached by
    /// dial-backs: peers can connect to this node unsolicited.
    pub fn is_public(&self) -> bool {
        self.inner.reach.is_public()
    }
}
