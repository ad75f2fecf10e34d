//! The nf_tables table that keeps this node from answering ARP for VIPs it does not hold (kube-proxy's IPVS mode
//! binds every VIP to kube-ipvs0 on every node: docs/ipvs.md), spoken over nfnetlink with no `nft` binary:
//!
//! ```text
//! table arp openelb-ipvs-arp {
//!     set vips { type ipv4_addr; elements = { <the plan's IPv4 VIPs this node does not hold> } }
//!     chain input  { type filter hook input priority 0; policy accept;
//!                    arp hlen 6 arp plen 4 arp operation request arp daddr ip @vips drop }
//!     chain output { type filter hook output priority 0; policy accept;
//!                    arp hlen 6 arp plen 4 arp saddr ip @vips drop }
//! }
//! ```
//!
//! Every change replaces the whole table in one transaction (create-if-absent, delete, create anew), so a
//! restarted speaker never leaves an old rule or set behind. The speaker's own gratuitous ARPs leave through a
//! packet socket, which the `arp` family's hooks do not see.

use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::time::Duration;

use netlink_packet_core::{NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
use netlink_packet_netfilter::nftables::{
    ChainAttribute, ChainMessage, Cmp, DataAttribute, Expressions, Hook, HookNumber, Immediate, ListAttribute, Lookup,
    NfTablesMessage, Operator, Payload, Register, RuleAttribute, RuleMessage, SetAttribute, SetElementAttribute,
    SetElementList, SetElementMessage, SetMessage, TableAttribute, TableMessage, Verdict, VerdictAttribute,
};
use netlink_packet_netfilter::none::ControlMessage;
use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage, NetfilterProtoFamily};
use netlink_sys::{Socket, protocols::NETLINK_NETFILTER};

/// The table's name in the `arp` family (`nft list table arp openelb-ipvs-arp`).
pub const TABLE: &str = "openelb-ipvs-arp";
const SET: &str = "vips";
const SET_ID: u32 = 1;
/// nftables' `ipv4_addr` data type.
const IPV4_ADDR_TYPE: u32 = 7;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
/// `NFT_PAYLOAD_NETWORK_HEADER`: in the `arp` family, the ARP header.
const NETWORK_HEADER: u32 = 1;
/// `NF_ARP_IN`, `NF_ARP_OUT`.
const ARP_IN: u32 = 0;
const ARP_OUT: u32 = 1;
const NF_DROP: u32 = 0;
const NF_ACCEPT: u32 = 1;
/// Elements per set-element message: a nested attribute's length is 16 bits.
const ELEMENTS_PER_MESSAGE: usize = 1000;
/// Bytes per transaction: the kernel refuses a datagram longer than the socket's send buffer (212992 bytes by
/// default). Sets too large for one are filled by the transactions that follow the one replacing the table.
const BATCH_BYTES: usize = 128 * 1024;
const REPLY_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the table could not be written.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("open nfnetlink socket: {0}")]
    Open(std::io::Error),
    #[error("nfnetlink: {op}: {source}")]
    Io {
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The kernel refused a message (EPERM without NET_ADMIN, EOPNOTSUPP without nf_tables or its arp family).
    #[error("nf_tables refused the {what} (errno {errno}: {})", std::io::Error::from_raw_os_error(*errno))]
    Refused { what: String, errno: i32 },
    #[error("nfnetlink: no answer within {}s", REPLY_TIMEOUT.as_secs())]
    Timeout,
}

/// An nfnetlink socket opened in the network namespace of the thread that opened it.
pub struct ArpFilter {
    socket: Mutex<(Socket, u32)>,
}

impl ArpFilter {
    pub fn open() -> Result<Self, FilterError> {
        let mut socket = Socket::new(NETLINK_NETFILTER).map_err(FilterError::Open)?;
        socket.bind_auto().map_err(FilterError::Open)?;
        socket2::SockRef::from(&socket).set_read_timeout(Some(REPLY_TIMEOUT)).map_err(FilterError::Open)?;
        Ok(ArpFilter { socket: Mutex::new((socket, 1)) })
    }

    /// Replaces the table so that exactly `drop` is filtered.
    pub fn replace(&self, drop: &[Ipv4Addr]) -> Result<(), FilterError> {
        for batch in replace_batches(drop) {
            self.transact(batch)?;
        }
        Ok(())
    }

    /// Removes the table; nothing to do when it is absent.
    pub fn remove(&self) -> Result<(), FilterError> {
        self.transact(vec![
            table_msg(NfTablesMessage::NewTable, NLM_F_CREATE),
            table_msg(NfTablesMessage::DeleteTable, 0),
        ])
    }

    /// Sends one transaction and waits for the kernel's answer to each of its messages.
    fn transact(&self, inner: Vec<Message>) -> Result<(), FilterError> {
        let mut guard = self.socket.lock().unwrap_or_else(|p| p.into_inner());
        let (socket, next_seq) = &mut *guard;
        let first = *next_seq;
        let mut whats = Vec::with_capacity(inner.len());
        let mut msgs = Vec::with_capacity(inner.len() + 2);
        msgs.push(control(ControlMessage::BatchBegin, 0));
        for (what, mut msg) in inner {
            msg.header.flags |= NLM_F_ACK;
            whats.push(what);
            msgs.push(msg);
        }
        msgs.push(control(ControlMessage::BatchEnd, 0));
        let mut buf = Vec::new();
        for (i, msg) in msgs.iter_mut().enumerate() {
            msg.header.flags |= NLM_F_REQUEST;
            msg.header.sequence_number = first.wrapping_add(i as u32);
            msg.finalize();
            let at = buf.len();
            buf.resize(at + msg.buffer_len(), 0);
            msg.serialize(&mut buf[at..]);
        }
        *next_seq = first.wrapping_add(msgs.len() as u32);
        socket.send(&buf, 0).map_err(|source| FilterError::Io { op: "send", source })?;
        let expected = whats.len();
        let mut acked = 0;
        while acked < expected {
            let (reply, _) = socket.recv_from_full().map_err(|source| match source.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => FilterError::Timeout,
                _ => FilterError::Io { op: "receive", source },
            })?;
            let mut rest = reply.as_slice();
            while !rest.is_empty() {
                let Ok(msg) = NetlinkMessage::<NetfilterMessage>::deserialize(rest) else { break };
                let len = (msg.header.length as usize).max(1).min(rest.len());
                rest = &rest[netlink_align(len).min(rest.len())..];
                let index = msg.header.sequence_number.wrapping_sub(first) as usize;
                // Answers to an earlier transaction that gave up waiting.
                if index > expected {
                    continue;
                }
                if let NetlinkPayload::Error(e) = msg.payload {
                    if let Some(code) = e.code {
                        let what = index.checked_sub(1).and_then(|i| whats.get(i)).cloned();
                        let what = what.unwrap_or_else(|| "transaction".to_string());
                        return Err(FilterError::Refused { what, errno: -code.get() });
                    }
                    acked += 1;
                }
            }
        }
        Ok(())
    }
}

fn netlink_align(len: usize) -> usize {
    (len + 3) & !3
}

/// A message of the transaction and what it does, for error messages.
type Message = (String, NetlinkMessage<NetfilterMessage>);

fn nft(inner: NfTablesMessage, flags: u16) -> NetlinkMessage<NetfilterMessage> {
    let mut msg =
        NetlinkMessage::from(NetfilterMessage::new(NetfilterHeader::new(NetfilterProtoFamily::ARP, 0, 0), inner));
    msg.header.flags |= flags;
    msg
}

fn control(inner: ControlMessage, flags: u16) -> NetlinkMessage<NetfilterMessage> {
    let header = NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, NFNL_SUBSYS_NFTABLES);
    let mut msg = NetlinkMessage::from(NetfilterMessage::new(header, inner));
    msg.header.flags |= flags;
    msg
}

fn table_msg(kind: fn(TableMessage) -> NfTablesMessage, flags: u16) -> Message {
    let msg = kind(TableMessage { attributes: vec![TableAttribute::Name(TABLE.into())] });
    let what = match msg {
        NfTablesMessage::DeleteTable(_) => "deletion of",
        _ => "creation of",
    };
    (format!("{what} table arp {TABLE}"), nft(msg, flags))
}

fn chain(name: &str, hook: u32) -> Message {
    let msg = NfTablesMessage::NewChain(ChainMessage {
        attributes: vec![
            ChainAttribute::Table(TABLE.into()),
            ChainAttribute::Name(name.into()),
            ChainAttribute::Hook(vec![Hook::Number(HookNumber::Other(hook)), Hook::Priority(0)]),
            ChainAttribute::Policy(NF_ACCEPT),
            ChainAttribute::Type("filter".into()),
        ],
    });
    (format!("{name} chain (arp family hook)"), nft(msg, NLM_F_CREATE))
}

fn set() -> Message {
    let msg = NfTablesMessage::NewSet(SetMessage {
        attributes: vec![
            SetAttribute::Table(TABLE.into()),
            SetAttribute::Name(SET.into()),
            SetAttribute::KeyType(IPV4_ADDR_TYPE),
            SetAttribute::KeyLen(4),
            SetAttribute::Id(SET_ID),
        ],
    });
    (format!("set {SET}"), nft(msg, NLM_F_CREATE))
}

fn elements(chunk: &[Ipv4Addr]) -> Message {
    let list = chunk
        .iter()
        .map(|ip| ListAttribute::Element(vec![SetElementAttribute::Key(DataAttribute::Value(ip.octets().to_vec()))]))
        .collect();
    let msg = NfTablesMessage::NewSetElement(SetElementMessage {
        attributes: vec![
            SetElementList::Table(TABLE.into()),
            SetElementList::Set(SET.into()),
            SetElementList::SetId(SET_ID),
            SetElementList::Elements(list),
        ],
    });
    let what = match (chunk.first(), chunk.last()) {
        (Some(a), Some(b)) => format!("{} set elements {a}..{b}", chunk.len()),
        _ => "set elements".to_string(),
    };
    (what, nft(msg, NLM_F_CREATE))
}

fn payload(offset: u32, len: u32) -> ListAttribute<netlink_packet_netfilter::nftables::ExpressionAttribute> {
    Expressions::Payload(vec![
        Payload::DestinationRegister(Register::Reg1),
        Payload::Base(NETWORK_HEADER),
        Payload::Offset(offset),
        Payload::Len(len),
    ])
    .into()
}

fn equals(value: &[u8]) -> ListAttribute<netlink_packet_netfilter::nftables::ExpressionAttribute> {
    Expressions::Cmp(vec![
        Cmp::SourceRegister(Register::Reg1),
        Cmp::Op(Operator::Equal),
        Cmp::Data(DataAttribute::Value(value.to_vec())),
    ])
    .into()
}

/// `arp hlen 6 arp plen 4 [arp operation request] arp <addr> ip @vips drop`, the address at `addr_offset`.
fn rule(chain: &str, request_only: bool, addr_offset: u32) -> Message {
    let mut exprs = vec![payload(4, 2), equals(&[6, 4])];
    if request_only {
        exprs.extend([payload(6, 2), equals(&[0, 1])]);
    }
    exprs.push(payload(addr_offset, 4));
    exprs.push(
        Expressions::Lookup(vec![
            Lookup::SourceRegister(Register::Reg1),
            Lookup::Set(SET.into()),
            Lookup::SetId(SET_ID),
        ])
        .into(),
    );
    exprs.push(
        Expressions::Immediate(vec![
            Immediate::DestinationRegister(Register::Verdict),
            Immediate::Data(DataAttribute::Verdict(vec![VerdictAttribute::Code(Verdict::Other(NF_DROP))])),
        ])
        .into(),
    );
    let msg = NfTablesMessage::NewRule(RuleMessage {
        attributes: vec![
            RuleAttribute::Table(TABLE.into()),
            RuleAttribute::Chain(chain.into()),
            RuleAttribute::Expressions(exprs),
        ],
    });
    (format!("rule of chain {chain}"), nft(msg, NLM_F_CREATE | NLM_F_APPEND))
}

/// The transactions that make the table filter exactly `drop`: the first replaces the whole table (with as many
/// elements as fit), the others add the remaining elements.
pub(crate) fn replace_batches(drop: &[Ipv4Addr]) -> Vec<Vec<Message>> {
    let mut current = vec![
        table_msg(NfTablesMessage::NewTable, NLM_F_CREATE),
        table_msg(NfTablesMessage::DeleteTable, 0),
        table_msg(NfTablesMessage::NewTable, NLM_F_CREATE),
        chain("input", ARP_IN),
        chain("output", ARP_OUT),
        set(),
        // ARP header: hrd 2, pro 2, hln 1, pln 1, op 2, sha 6, spa 4 (offset 14), tha 6, tpa 4 (offset 24).
        rule("input", true, 24),
        rule("output", false, 14),
    ];
    let mut batches = Vec::new();
    let mut size: usize = current.iter().map(|(_, m)| m.buffer_len()).sum();
    for chunk in drop.chunks(ELEMENTS_PER_MESSAGE) {
        let msg = elements(chunk);
        let len = msg.1.buffer_len();
        if size + len > BATCH_BYTES {
            batches.push(std::mem::take(&mut current));
            size = 0;
        }
        size += len;
        current.push(msg);
    }
    batches.push(current);
    batches
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_netfilter::NetfilterMessageInner;

    fn count_elements(batches: &[Vec<Message>]) -> usize {
        batches
            .iter()
            .flatten()
            .map(|(_, m)| match &m.payload {
                NetlinkPayload::InnerMessage(NetfilterMessage {
                    inner: NetfilterMessageInner::NfTables(NfTablesMessage::NewSetElement(s)),
                    ..
                }) => s
                    .attributes
                    .iter()
                    .map(|a| match a {
                        SetElementList::Elements(e) => e.len(),
                        _ => 0,
                    })
                    .sum(),
                _ => 0,
            })
            .sum()
    }

    #[test]
    fn one_transaction_replaces_the_whole_table_and_big_sets_spill_into_more() {
        let few: Vec<Ipv4Addr> = (0..10u32).map(|i| Ipv4Addr::from(0xc000_0200 + i)).collect();
        let batches = replace_batches(&few);
        assert_eq!(batches.len(), 1);
        let whats: Vec<&str> = batches[0].iter().map(|(w, _)| w.as_str()).collect();
        assert_eq!(
            whats[..3],
            [
                "creation of table arp openelb-ipvs-arp",
                "deletion of table arp openelb-ipvs-arp",
                "creation of table arp openelb-ipvs-arp"
            ]
        );
        assert_eq!(count_elements(&batches), 10);
        assert!(replace_batches(&[]).iter().flatten().all(|(w, _)| !w.contains("elements")));

        let many: Vec<Ipv4Addr> = (0..20_000u32).map(|i| Ipv4Addr::from(0xc633_0000 + i)).collect();
        let batches = replace_batches(&many);
        assert!(batches.len() > 1);
        assert_eq!(count_elements(&batches), 20_000);
        for b in &batches {
            assert!(b.iter().map(|(_, m)| m.buffer_len()).sum::<usize>() <= BATCH_BYTES);
            assert!(b.iter().all(|(_, m)| m.buffer_len() < 65_535), "nested attribute length is 16 bits");
        }
    }

    #[test]
    fn messages_serialise_and_parse_back() {
        for (what, mut msg) in replace_batches(&[Ipv4Addr::new(192, 0, 2, 10)]).into_iter().flatten() {
            msg.finalize();
            let mut buf = vec![0; msg.buffer_len()];
            msg.serialize(&mut buf);
            let back = NetlinkMessage::<NetfilterMessage>::deserialize(&buf);
            assert!(back.is_ok(), "{what}: {back:?}");
        }
    }
}
