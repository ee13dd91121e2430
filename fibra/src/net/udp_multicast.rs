//! `UdpSocket`'s multicast options, as `std::net::UdpSocket` has them: group membership
//! (`IP_ADD_MEMBERSHIP`, `IPV6_JOIN_GROUP` and their leave twins), loopback of the socket's
//! own group datagrams, and the IPv4 multicast TTL. None of them waits, so each is the OS
//! call on the fd.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::UdpSocket;

impl UdpSocket {
    /// Joins the IPv4 multicast group `multiaddr` on the interface with address `interface`
    /// (`UNSPECIFIED`: the one the kernel routes the group through). Datagrams sent to the
    /// group and to this socket's port are then received.
    ///
    /// # Errors
    /// `InvalidInput` if `multiaddr` is not multicast; `ENODEV` if no interface fits.
    ///
    /// ```
    /// use std::net::Ipv4Addr;
    /// # fibra::run(|| {
    /// let s = fibra::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    /// let group = Ipv4Addr::new(239, 0, 0, 7);
    /// s.join_multicast_v4(&group, &Ipv4Addr::LOCALHOST).unwrap();
    /// s.leave_multicast_v4(&group, &Ipv4Addr::LOCALHOST).unwrap();
    /// # });
    /// ```
    pub fn join_multicast_v4(&self, multiaddr: &Ipv4Addr, interface: &Ipv4Addr) -> io::Result<()> {
        self.std().join_multicast_v4(multiaddr, interface)
    }

    /// Leaves a group joined with [`join_multicast_v4`](Self::join_multicast_v4).
    ///
    /// # Errors
    /// `EADDRNOTAVAIL` if the socket is not a member.
    ///
    /// ```
    /// use std::net::Ipv4Addr;
    /// # fibra::run(|| {
    /// let s = fibra::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    /// let group = Ipv4Addr::new(239, 0, 0, 8);
    /// assert!(s.leave_multicast_v4(&group, &Ipv4Addr::LOCALHOST).is_err()); // not a member
    /// # });
    /// ```
    pub fn leave_multicast_v4(&self, multiaddr: &Ipv4Addr, interface: &Ipv4Addr) -> io::Result<()> {
        self.std().leave_multicast_v4(multiaddr, interface)
    }

    /// Joins the IPv6 multicast group `multiaddr` on the interface with index `interface`
    /// (0: the kernel's choice; `lo` is usually 1).
    ///
    /// # Errors
    /// `InvalidInput` if `multiaddr` is not multicast; `ENODEV` for an unknown interface; on
    /// an IPv4 socket.
    ///
    /// ```
    /// use std::net::Ipv6Addr;
    /// # fibra::run(|| {
    /// if let Ok(s) = fibra::net::UdpSocket::bind("[::]:0") {
    ///     let group: Ipv6Addr = "ff02::7".parse().unwrap();
    ///     if s.join_multicast_v6(&group, 1).is_ok() {
    ///         s.leave_multicast_v6(&group, 1).unwrap();
    ///     }
    /// }
    /// # });
    /// ```
    pub fn join_multicast_v6(&self, multiaddr: &Ipv6Addr, interface: u32) -> io::Result<()> {
        self.std().join_multicast_v6(multiaddr, interface)
    }

    /// Leaves a group joined with [`join_multicast_v6`](Self::join_multicast_v6).
    ///
    /// # Errors
    /// If the socket is not a member.
    ///
    /// ```
    /// use std::net::Ipv6Addr;
    /// # fibra::run(|| {
    /// if let Ok(s) = fibra::net::UdpSocket::bind("[::]:0") {
    ///     let group: Ipv6Addr = "ff02::8".parse().unwrap();
    ///     assert!(s.leave_multicast_v6(&group, 1).is_err()); // not a member
    /// }
    /// # });
    /// ```
    pub fn leave_multicast_v6(&self, multiaddr: &Ipv6Addr, interface: u32) -> io::Result<()> {
        self.std().leave_multicast_v6(multiaddr, interface)
    }

    /// Sets `IP_MULTICAST_LOOP`: whether IPv4 group datagrams this socket sends are also
    /// delivered to members on this host (on by default).
    ///
    /// # Errors
    /// If the OS refuses.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let s = fibra::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    /// s.set_multicast_loop_v4(false).unwrap();
    /// assert!(!s.multicast_loop_v4().unwrap());
    /// # });
    /// ```
    pub fn set_multicast_loop_v4(&self, on: bool) -> io::Result<()> {
        self.std().set_multicast_loop_v4(on)
    }

    /// Whether `IP_MULTICAST_LOOP` is set.
    ///
    /// # Errors
    /// If the OS cannot report it.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let s = fibra::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    /// assert!(s.multicast_loop_v4().unwrap());
    /// # });
    /// ```
    pub fn multicast_loop_v4(&self) -> io::Result<bool> {
        self.std().multicast_loop_v4()
    }

    /// Sets `IP_MULTICAST_TTL`: how many routers IPv4 group datagrams may cross (1 by
    /// default: the local network only).
    ///
    /// # Errors
    /// `InvalidInput` above 255.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let s = fibra::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    /// s.set_multicast_ttl_v4(4).unwrap();
    /// assert_eq!(s.multicast_ttl_v4().unwrap(), 4);
    /// # });
    /// ```
    pub fn set_multicast_ttl_v4(&self, ttl: u32) -> io::Result<()> {
        self.std().set_multicast_ttl_v4(ttl)
    }

    /// The `IP_MULTICAST_TTL`.
    ///
    /// # Errors
    /// If the OS cannot report it.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let s = fibra::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    /// assert_eq!(s.multicast_ttl_v4().unwrap(), 1);
    /// # });
    /// ```
    pub fn multicast_ttl_v4(&self) -> io::Result<u32> {
        self.std().multicast_ttl_v4()
    }

    /// Sets `IPV6_MULTICAST_LOOP` (the IPv6 twin of
    /// [`set_multicast_loop_v4`](Self::set_multicast_loop_v4)).
    ///
    /// # Errors
    /// If the OS refuses (on an IPv4 socket).
    ///
    /// ```
    /// # fibra::run(|| {
    /// if let Ok(s) = fibra::net::UdpSocket::bind("[::1]:0") {
    ///     s.set_multicast_loop_v6(false).unwrap();
    ///     assert!(!s.multicast_loop_v6().unwrap());
    /// }
    /// # });
    /// ```
    pub fn set_multicast_loop_v6(&self, on: bool) -> io::Result<()> {
        self.std().set_multicast_loop_v6(on)
    }

    /// Whether `IPV6_MULTICAST_LOOP` is set.
    ///
    /// # Errors
    /// If the OS cannot report it (on an IPv4 socket).
    ///
    /// ```
    /// # fibra::run(|| {
    /// if let Ok(s) = fibra::net::UdpSocket::bind("[::1]:0") {
    ///     assert!(s.multicast_loop_v6().unwrap());
    /// }
    /// # });
    /// ```
    pub fn multicast_loop_v6(&self) -> io::Result<bool> {
        self.std().multicast_loop_v6()
    }
}
