//! Which `spec.protocol`s this build announces, and the words every part uses for a pool whose protocol it does
//! not: such a pool still allocates (as upstream does, so a migrated cluster keeps its addresses), but no node
//! answers for its addresses. The controller's `Announced` condition, its `AddressNotAnnounced` Event on the
//! Service, the webhook's warning and `openelb-cli validate` all decide from [`is_announced`].

use std::net::IpAddr;

use crate::event_reason::EventReason;
use crate::ipam::{Event, EventType};
use crate::model::Protocol;

/// The protocols a speaker of this build announces: VIP mode only, until layer2 and bgp are implemented.
pub const ANNOUNCED: [Protocol; 1] = [Protocol::Vip];

pub fn is_announced(protocol: Protocol) -> bool {
    ANNOUNCED.contains(&protocol)
}

/// Why addresses of a pool of `protocol` reach no network, or `None` when the speakers announce them.
pub fn not_announced(protocol: Protocol) -> Option<String> {
    if is_announced(protocol) {
        return None;
    }
    Some(format!(
        "protocol {protocol} is not implemented by this build (an omitted spec.protocol means bgp, as upstream): \
         addresses are allocated from this Eip and written into the Services' status, but no node announces them; \
         only protocol vip is announced"
    ))
}

/// The Warning Event for a Service that was just given `ip` from Eip `pool` of `protocol`, when nothing will
/// announce it. Recorded once per assignment: a Service that keeps its address gets none.
pub fn assignment_event(pool: &str, protocol: Protocol, ip: IpAddr) -> Option<Event> {
    let why = not_announced(protocol)?;
    Some(Event {
        type_: EventType::Warning,
        reason: EventReason::AddressNotAnnounced,
        message: format!("{ip} from Eip {pool} is not announced: {why}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_vip_is_announced() {
        assert!(is_announced(Protocol::Vip));
        assert!(!is_announced(Protocol::Layer2));
        assert!(!is_announced(Protocol::Bgp));
        assert_eq!(not_announced(Protocol::Vip), None);
        // An omitted protocol is read as bgp, so it is not announced either.
        assert!(!is_announced(Protocol::from_spec(None)));
    }

    #[test]
    fn the_message_names_the_protocol_and_what_happens() {
        for p in [Protocol::Layer2, Protocol::Bgp] {
            let m = not_announced(p).unwrap_or_default();
            assert!(m.starts_with(&format!("protocol {p} is not implemented")), "{m}");
            assert!(m.contains("omitted spec.protocol means bgp"), "{m}");
            assert!(m.contains("allocated") && m.contains("no node announces them"), "{m}");
        }
    }

    #[test]
    fn the_service_event_is_a_warning_naming_address_and_eip() {
        let ip: IpAddr = "192.0.2.7".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        assert_eq!(assignment_event("pool", Protocol::Vip, ip), None);
        let e = assignment_event("pool", Protocol::Layer2, ip);
        let Some(e) = e else { panic!("no event for layer2") };
        assert_eq!((e.type_, e.reason), (EventType::Warning, EventReason::AddressNotAnnounced));
        assert!(e.message.starts_with("192.0.2.7 from Eip pool is not announced: protocol layer2"), "{}", e.message);
    }
}
