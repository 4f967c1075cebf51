//! Where the control plane may connect on a tenant's behalf.
//!
//! A tenant names the endpoints the control plane calls (an edge service's API, an EMQX REST
//! API, a scrape target, a webhook). Without a policy, an editor could point one at the control
//! plane's own loopback services or a cloud metadata service and read the answer back through a
//! task result. An [`EgressPolicy`] is applied to every connection a client built by
//! [`ClientConfig`](crate::ClientConfig) makes, three times over:
//!
//! 1. a host written as an IP address is checked before anything is sent, in every spelling the
//!    URL standard accepts (`127.1`, `0x7f000001`, `2130706433`, `[::ffff:127.0.0.1]`), because
//!    the URL is parsed, never string-matched ([`EgressPolicy::check_url`]);
//! 2. a host name is resolved by the policy's resolver, which drops the addresses the policy
//!    refuses, so a name that resolves to loopback (or is rebound to it) is never connected to;
//! 3. once a connection is made, its peer address is checked again before a byte of the request
//!    is written.
//!
//! Redirects are never followed and the environment's proxy is off unless asked, so no other
//! path leads elsewhere.
//!
//! The default refuses loopback, link-local (169.254.0.0/16, fe80::/10, where cloud metadata
//! services live), unspecified, multicast, broadcast, reserved and cloud metadata addresses, and
//! allows private ranges (edge services live in factory networks). IPv4 addresses carried in IPv6
//! ones (mapped, compatible, NAT64, 6to4) are judged as the IPv4 address they carry.
//!
//! ```
//! use ecp_http::EgressPolicy;
//!
//! let policy = EgressPolicy::default();
//! assert!(policy.check_ip("10.0.0.5".parse().unwrap()).is_ok());
//! assert!(policy.check_ip("127.0.0.1".parse().unwrap()).is_err());
//! assert!(policy.check_ip("::ffff:169.254.169.254".parse().unwrap()).is_err());
//!
//! // Tests and single-machine demos opt in to loopback explicitly.
//! let local = EgressPolicy::builder().allow_loopback(true).build();
//! assert!(local.check_ip("127.0.0.1".parse().unwrap()).is_ok());
//! ```

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::{Connection, HttpInfo};
use ipnet::IpNet;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The kind of address a connection was refused for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AddressClass {
    /// 127.0.0.0/8, ::1.
    Loopback,
    /// 169.254.0.0/16, fe80::/10.
    LinkLocal,
    /// 0.0.0.0/8, ::.
    Unspecified,
    /// 224.0.0.0/4, ff00::/8.
    Multicast,
    /// 255.255.255.255.
    Broadcast,
    /// A cloud metadata service (169.254.169.254, 168.63.129.16, 100.100.100.200, fd00:ec2::254).
    Metadata,
    /// 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10, fc00::/7.
    Private,
    /// Reserved for future or special use (240.0.0.0/4, 192.0.0.0/24, Teredo, ...).
    Reserved,
    /// A network the policy denies by name.
    Denied,
    /// Every other address.
    Public,
}

impl AddressClass {
    fn describe(self) -> &'static str {
        match self {
            AddressClass::Loopback => "loopback",
            AddressClass::LinkLocal => "link-local",
            AddressClass::Unspecified => "unspecified",
            AddressClass::Multicast => "multicast",
            AddressClass::Broadcast => "broadcast",
            AddressClass::Metadata => "cloud metadata",
            AddressClass::Private => "private",
            AddressClass::Reserved => "reserved",
            AddressClass::Denied => "denied",
            AddressClass::Public => "public",
        }
    }
}

/// A connection the egress policy refused. It never names the address (a host name's resolution
/// is the control plane's business, not the tenant's), only its class.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the egress policy refuses {} addresses", .class.describe())]
pub struct EgressDenied {
    /// The class of the refused address.
    pub class: AddressClass,
}

/// Where outbound connections may go; see the [module docs](self). Build with
/// [`EgressPolicy::builder`]; the [`Default`] is the strict policy described there.
#[derive(Clone, PartialEq, Eq)]
pub struct EgressPolicy {
    loopback: bool,
    private: bool,
    link_local: bool,
    allowed: Vec<IpNet>,
    denied: Vec<IpNet>,
}

impl Default for EgressPolicy {
    fn default() -> Self {
        EgressPolicy { loopback: false, private: true, link_local: false, allowed: Vec::new(), denied: Vec::new() }
    }
}

impl fmt::Debug for EgressPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EgressPolicy")
            .field("loopback", &self.loopback)
            .field("private", &self.private)
            .field("link_local", &self.link_local)
            .field("allowed", &self.allowed)
            .field("denied", &self.denied)
            .finish()
    }
}

impl EgressPolicy {
    /// A builder starting from the default policy.
    pub fn builder() -> EgressPolicyBuilder {
        EgressPolicyBuilder(EgressPolicy::default())
    }

    /// The policy of tests and single-machine demos: the default with loopback allowed.
    pub fn allow_loopback() -> Self {
        EgressPolicy { loopback: true, ..EgressPolicy::default() }
    }

    /// The class of `ip` (an IPv4 address carried in an IPv6 one is classified as itself).
    pub fn classify(ip: IpAddr) -> AddressClass {
        match ip {
            IpAddr::V4(v4) => classify_v4(v4),
            IpAddr::V6(v6) => match embedded_v4(v6) {
                Some(v4) => classify_v4(v4),
                None => classify_v6(v6),
            },
        }
    }

    /// Whether a connection to `ip` is allowed.
    ///
    /// # Errors
    /// [`EgressDenied`] naming the address's class.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), EgressDenied> {
        let ip = match ip {
            IpAddr::V6(v6) => embedded_v4(v6).map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        if self.denied.iter().any(|n| n.contains(&ip)) {
            return Err(EgressDenied { class: AddressClass::Denied });
        }
        let class = Self::classify(ip);
        let allowed = match class {
            AddressClass::Public => true,
            AddressClass::Private => self.private,
            AddressClass::Loopback => self.loopback,
            AddressClass::LinkLocal => self.link_local,
            _ => false,
        };
        // An allowed network opens its addresses, but never metadata services or the
        // unspecified address.
        let listed = self.allowed.iter().any(|n| n.contains(&ip)) && !matches!(class, AddressClass::Metadata | AddressClass::Unspecified);
        if allowed || listed { Ok(()) } else { Err(EgressDenied { class }) }
    }

    /// Checks the host of `url` when it is an IP address, in any spelling the URL standard
    /// accepts (the URL is parsed: `127.1` and `0x7f000001` are 127.0.0.1). A host name passes
    /// here and is checked on resolution.
    ///
    /// # Errors
    /// [`EgressDenied`] for an IP host the policy refuses.
    pub fn check_url(&self, url: &url::Url) -> Result<(), EgressDenied> {
        match url.host() {
            Some(url::Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip)),
            Some(url::Host::Domain(_)) | None => Ok(()),
        }
    }

    /// Resolves `host` (not an IP address) and keeps the addresses the policy allows.
    ///
    /// # Errors
    /// The resolver's error, or [`EgressDenied`] when every address is refused.
    pub async fn resolve(&self, host: &str) -> Result<Vec<SocketAddr>, BoxError> {
        // `localhost` and its subdomains are loopback whatever the resolver says (RFC 6761), in
        // any case and with or without the root's dot.
        let name = host.trim_end_matches('.').to_ascii_lowercase();
        if (name == "localhost" || name.ends_with(".localhost")) && !self.loopback {
            return Err(Box::new(EgressDenied { class: AddressClass::Loopback }));
        }
        let addrs = tokio::net::lookup_host((host, 0)).await?;
        let mut refused = None;
        let allowed: Vec<SocketAddr> = addrs
            .filter(|a| match self.check_ip(a.ip()) {
                Ok(()) => true,
                Err(e) => {
                    refused.get_or_insert(e);
                    false
                }
            })
            .collect();
        match (allowed.is_empty(), refused) {
            (true, Some(e)) => Err(Box::new(e)),
            (true, None) => Err(format!("{host:?} has no address").into()),
            (false, _) => Ok(allowed),
        }
    }
}

/// Builds an [`EgressPolicy`]; made by [`EgressPolicy::builder`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct EgressPolicyBuilder(EgressPolicy);

impl EgressPolicyBuilder {
    /// Whether loopback addresses are allowed (default no).
    pub fn allow_loopback(mut self, on: bool) -> Self {
        self.0.loopback = on;
        self
    }

    /// Whether private ranges (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7) are allowed
    /// (default yes: edge services live in factory networks).
    pub fn allow_private(mut self, on: bool) -> Self {
        self.0.private = on;
        self
    }

    /// Whether link-local addresses are allowed (default no); metadata services stay refused.
    pub fn allow_link_local(mut self, on: bool) -> Self {
        self.0.link_local = on;
        self
    }

    /// Allows `net` whatever its class (a loopback port range is not a thing: this opens the
    /// whole network), except metadata services and the unspecified address. A denied network
    /// wins over an allowed one.
    pub fn allow(mut self, net: IpNet) -> Self {
        self.0.allowed.push(net);
        self
    }

    /// Refuses `net` (the control plane's own network, say), whatever else allows it.
    pub fn deny(mut self, net: IpNet) -> Self {
        self.0.denied.push(net);
        self
    }

    /// The policy.
    pub fn build(self) -> EgressPolicy {
        self.0
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    let o = ip.octets();
    let metadata = [Ipv4Addr::new(169, 254, 169, 254), Ipv4Addr::new(168, 63, 129, 16), Ipv4Addr::new(100, 100, 100, 200)];
    if metadata.contains(&ip) {
        AddressClass::Metadata
    } else if o[0] == 0 {
        AddressClass::Unspecified
    } else if ip.is_loopback() {
        AddressClass::Loopback
    } else if ip.is_link_local() {
        AddressClass::LinkLocal
    } else if ip.is_broadcast() {
        AddressClass::Broadcast
    } else if ip.is_multicast() {
        AddressClass::Multicast
    } else if o[0] >= 240 || (o[0] == 192 && o[1] == 0 && o[2] == 0) {
        AddressClass::Reserved
    } else if ip.is_private() || (o[0] == 100 && (64..128).contains(&o[1])) {
        AddressClass::Private
    } else {
        AddressClass::Public
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    let s = ip.segments();
    if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        AddressClass::Metadata
    } else if ip.is_unspecified() {
        AddressClass::Unspecified
    } else if ip.is_loopback() {
        AddressClass::Loopback
    } else if ip.is_multicast() {
        AddressClass::Multicast
    } else if s[0] & 0xffc0 == 0xfe80 {
        AddressClass::LinkLocal
    } else if s[0] & 0xfe00 == 0xfc00 {
        AddressClass::Private
    } else if (s[0] == 0x2001 && s[1] == 0) || s[0] & 0xffc0 == 0xfec0 || s[0] == 0x0100 || s[0] & 0xe000 != 0x2000 {
        // Teredo, site-local, discard-only, and everything outside global unicast 2000::/3.
        AddressClass::Reserved
    } else {
        AddressClass::Public
    }
}

/// The IPv4 address an IPv6 one carries: mapped (::ffff:a.b.c.d), compatible (::a.b.c.d),
/// NAT64 (64:ff9b::a.b.c.d) or 6to4 (2002:aabb:ccdd::).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if let Some(v4) = ip.to_ipv4_mapped() {
        Some(v4)
    } else if (s[..6] == [0; 6] && !ip.is_loopback() && !ip.is_unspecified()) || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        Some(tail)
    } else if s[0] == 0x2002 {
        Some(Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8))
    } else {
        None
    }
}

/// The resolver of a policed client: the system's, minus the refused addresses.
#[derive(Debug, Clone)]
pub(crate) struct PolicyResolver(pub(crate) Arc<EgressPolicy>);

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            let addrs = policy.resolve(name.as_str()).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The connector layer of a policed client: checks each new connection's peer address before
/// the request is written (IP hosts skip the resolver; this is where they are caught at the
/// latest).
#[derive(Debug, Clone)]
pub(crate) struct PolicyLayer(pub(crate) Arc<EgressPolicy>);

impl<S> tower_layer::Layer<S> for PolicyLayer {
    type Service = PolicyConnector<S>;

    fn layer(&self, inner: S) -> PolicyConnector<S> {
        PolicyConnector { inner, policy: self.0.clone() }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct PolicyConnector<S> {
    inner: S,
    policy: Arc<EgressPolicy>,
}

impl<S, R> tower_service::Service<R> for PolicyConnector<S>
where
    S: tower_service::Service<R>,
    S::Response: Connection + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: R) -> Self::Future {
        let connecting = self.inner.call(req);
        let policy = self.policy.clone();
        Box::pin(async move {
            let conn = connecting.await.map_err(Into::into)?;
            let mut extras = http::Extensions::new();
            conn.connected().get_extras(&mut extras);
            match extras.get::<HttpInfo>() {
                Some(info) => policy.check_ip(info.remote_addr().ip())?,
                None => return Err("the connection's peer address is not known: the egress policy cannot judge it".into()),
            }
            Ok(conn)
        })
    }
}

/// The egress refusal somewhere in `e`'s chain of causes, if any.
pub fn egress_refusal<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a EgressDenied> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(d) = err.downcast_ref::<EgressDenied>() {
            return Some(d);
        }
        cur = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_default_refuses_every_local_and_special_class() {
        let p = EgressPolicy::default();
        for (addr, class) in [
            ("127.0.0.1", AddressClass::Loopback),
            ("127.255.0.9", AddressClass::Loopback),
            ("::1", AddressClass::Loopback),
            ("::ffff:127.0.0.1", AddressClass::Loopback),
            ("::127.0.0.1", AddressClass::Loopback),
            ("64:ff9b::7f00:1", AddressClass::Loopback),
            ("2002:7f00:1::", AddressClass::Loopback),
            ("169.254.169.254", AddressClass::Metadata),
            ("::ffff:169.254.169.254", AddressClass::Metadata),
            ("fd00:ec2::254", AddressClass::Metadata),
            ("100.100.100.200", AddressClass::Metadata),
            ("168.63.129.16", AddressClass::Metadata),
            ("169.254.1.1", AddressClass::LinkLocal),
            ("fe80::1", AddressClass::LinkLocal),
            ("0.0.0.0", AddressClass::Unspecified),
            ("0.1.2.3", AddressClass::Unspecified),
            ("::", AddressClass::Unspecified),
            ("224.0.0.1", AddressClass::Multicast),
            ("ff02::1", AddressClass::Multicast),
            ("255.255.255.255", AddressClass::Broadcast),
            ("240.0.0.1", AddressClass::Reserved),
            ("2001::1", AddressClass::Reserved),
        ] {
            assert_eq!(p.check_ip(ip(addr)), Err(EgressDenied { class }), "{addr}");
        }
        for addr in ["10.0.0.5", "172.16.3.4", "192.168.1.1", "100.64.0.1", "fd12::1", "8.8.8.8", "2606:4700::1111"] {
            assert_eq!(p.check_ip(ip(addr)), Ok(()), "{addr}");
        }
    }

    #[test]
    fn settings_open_and_close_classes_but_never_metadata() {
        let strict = EgressPolicy::builder().allow_private(false).deny("8.8.8.0/24".parse().unwrap()).build();
        assert!(strict.check_ip(ip("10.0.0.5")).is_err());
        assert!(strict.check_ip(ip("fd12::1")).is_err());
        assert_eq!(strict.check_ip(ip("8.8.8.8")), Err(EgressDenied { class: AddressClass::Denied }));
        assert!(strict.check_ip(ip("1.1.1.1")).is_ok());
        let open = EgressPolicy::builder()
            .allow_loopback(true)
            .allow_link_local(true)
            .allow("0.0.0.0/0".parse().unwrap())
            .deny("127.0.0.2/32".parse().unwrap())
            .build();
        assert!(open.check_ip(ip("127.0.0.1")).is_ok());
        assert!(open.check_ip(ip("169.254.1.1")).is_ok());
        assert!(open.check_ip(ip("240.0.0.1")).is_ok(), "an allowed network opens reserved addresses");
        assert!(open.check_ip(ip("127.0.0.2")).is_err(), "a denied network wins");
        for addr in ["169.254.169.254", "0.0.0.0", "::ffff:169.254.169.254"] {
            assert!(open.check_ip(ip(addr)).is_err(), "{addr}");
        }
    }

    #[test]
    fn every_spelling_of_a_loopback_url_is_caught() {
        let p = EgressPolicy::default();
        for url in [
            "http://127.0.0.1/",
            "http://127.1/",
            "http://0x7f000001/",
            "http://2130706433/",
            "http://0177.0.0.1/",
            "http://0x7f.0.0.1:8080/api",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[0:0:0:0:0:ffff:7f00:1]/",
            "http://0/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::ffff:a9fe:a9fe]/",
        ] {
            let u = url::Url::parse(url).unwrap();
            assert!(p.check_url(&u).is_err(), "{url} passed");
        }
        assert!(p.check_url(&url::Url::parse("http://10.0.0.5:8085/").unwrap()).is_ok());
        assert!(p.check_url(&url::Url::parse("http://localhost./").unwrap()).is_ok(), "names are judged on resolution");
    }

    #[tokio::test]
    async fn names_that_resolve_to_refused_addresses_are_refused() {
        let p = EgressPolicy::default();
        for host in ["localhost", "localhost.", "LOCALHOST", "db.localhost", "127.0.0.1"] {
            let e = p.resolve(host).await.unwrap_err();
            assert!(egress_refusal(e.as_ref()).is_some(), "{host}: {e}");
        }
        assert!(EgressPolicy::allow_loopback().resolve("localhost").await.is_ok());
    }

    #[test]
    fn refusals_do_not_name_the_address() {
        let e = EgressPolicy::default().check_ip(ip("127.0.0.1")).unwrap_err();
        assert_eq!(e.to_string(), "the egress policy refuses loopback addresses");
    }
}
