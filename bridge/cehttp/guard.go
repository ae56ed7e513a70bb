package cehttp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
)

// ErrTargetRefused is wrapped by the error of a request to a target the
// Guard refuses. The Client classifies it as permanent: retrying cannot
// make a refused address allowed.
var ErrTargetRefused = errors.New("target refused")

// refusedByDefault are addresses no target may have unless an allowed
// network names them: link-local addresses, where every cloud serves its
// instance metadata (credentials included), and the metadata addresses
// outside that range.
var refusedByDefault = []netip.Prefix{
	netip.MustParsePrefix("169.254.0.0/16"),     // IPv4 link-local: AWS, GCP, Azure, OpenStack metadata 169.254.169.254, ECS 169.254.170.2
	netip.MustParsePrefix("fe80::/10"),          // IPv6 link-local
	netip.MustParsePrefix("fd00:ec2::254/128"),  // AWS metadata over IPv6
	netip.MustParsePrefix("100.100.100.200/32"), // Alibaba Cloud metadata
	netip.MustParsePrefix("168.63.129.16/32"),   // Azure WireServer
}

// GuardConfig says which targets a Client may reach.
type GuardConfig struct {
	// Allowed, when not empty, are the only targets allowed: host names
	// ("hooks.example.com", or "*.example.com" for its subdomains), IP
	// addresses and networks ("10.0.0.0/8"). A name is matched as the URL
	// gives it; addresses and networks are matched against the address
	// actually dialled. Empty allows every target not refused below.
	// Listing a link-local or metadata address or network (by address, not
	// by name) allows it.
	Allowed []string
	// Own are the addresses (host:port) meshd itself listens on: the app
	// API, the admin API, the probe listener, the webhook listener, the
	// mesh port. A target there is always refused, whatever its name says:
	// a subscription must not call the API that manages subscriptions and
	// connectors. A host of "" or 0.0.0.0 or :: (every interface) covers
	// every address of this host on that port; port 0 is ignored.
	Own []string
}

// Guard decides, at the moment a connection is dialled, whether its
// address may be reached: never meshd's own listeners, never a link-local
// or cloud metadata address unless allowed, and only the allowed targets
// when there is a list. Checking the dialled address, not the URL, defeats
// names that resolve to a refused address (DNS rebinding included). The
// zero Guard (and a nil *Guard) refuses only the link-local and metadata
// addresses.
type Guard struct {
	hosts []string // lower-case; "*.example.com" matches subdomains
	nets  []netip.Prefix
	own   []netip.AddrPort // an unspecified address: every local address
	// localAddrs lists this host's addresses (net.InterfaceAddrs); a field
	// so tests can fake interfaces.
	localAddrs func() ([]netip.Addr, error)
}

// NewGuard checks cfg and returns its Guard. Own hosts given by name are
// resolved now.
func NewGuard(cfg GuardConfig) (*Guard, error) {
	g := &Guard{localAddrs: interfaceAddrs}
	for i, a := range cfg.Allowed {
		a = strings.TrimSpace(a)
		if p, err := netip.ParsePrefix(a); err == nil {
			g.nets = append(g.nets, p.Masked())
			continue
		}
		if ip, err := netip.ParseAddr(strings.Trim(a, "[]")); err == nil {
			g.nets = append(g.nets, netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen()))
			continue
		}
		name := strings.TrimPrefix(strings.ToLower(a), "*.")
		if name == "" || strings.ContainsAny(name, "/:@?*[] ") {
			return nil, fmt.Errorf("[%d]: %q is neither a host name (*.example.com allowed), an IP address nor a network such as 10.0.0.0/8", i, a)
		}
		g.hosts = append(g.hosts, strings.ToLower(a))
	}
	for _, o := range cfg.Own {
		host, portText, err := net.SplitHostPort(o)
		if err != nil {
			return nil, fmt.Errorf("own address %q: %w", o, err)
		}
		port, err := strconv.ParseUint(portText, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("own address %q: port: %w", o, err)
		}
		if port == 0 {
			continue
		}
		var ips []netip.Addr
		switch ip, err := netip.ParseAddr(host); {
		case host == "":
			ips = []netip.Addr{netip.IPv4Unspecified()}
		case err == nil:
			ips = []netip.Addr{ip.Unmap()}
		default:
			addrs, err := net.DefaultResolver.LookupNetIP(context.Background(), "ip", host)
			if err != nil {
				return nil, fmt.Errorf("own address %q: %w", o, err)
			}
			for _, a := range addrs {
				ips = append(ips, a.Unmap())
			}
		}
		for _, ip := range ips {
			g.own = append(g.own, netip.AddrPortFrom(ip, uint16(port)))
		}
	}
	return g, nil
}

func interfaceAddrs() ([]netip.Addr, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out, nil
}

// restricted reports whether only listed targets are allowed.
func (g *Guard) restricted() bool { return g != nil && len(g.hosts)+len(g.nets) > 0 }

// hostListed reports whether host (a URL's host name) is an allowed name.
func (g *Guard) hostListed(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, h := range g.hosts {
		if suffix, ok := strings.CutPrefix(h, "*"); ok {
			if strings.HasSuffix(host, suffix) {
				return true
			}
		} else if host == h {
			return true
		}
	}
	return false
}

// CheckAddr says whether the address ip:port may be dialled for a URL
// whose host is host (a name, or the address itself). The error wraps
// ErrTargetRefused and says why.
func (g *Guard) CheckAddr(host string, addr netip.AddrPort) error {
	ip := addr.Addr().Unmap().WithZone("") // a zoned address matches no prefix
	target := netip.AddrPortFrom(ip, addr.Port()).String()
	if g != nil {
		for _, o := range g.own {
			if o.Port() == addr.Port() && g.sameHost(o.Addr(), ip) {
				return fmt.Errorf("%w: %s is one of meshd's own listeners", ErrTargetRefused, target)
			}
		}
	}
	listed := false
	if g != nil {
		for _, n := range g.nets {
			if n.Contains(ip) {
				listed = true
				break
			}
		}
	}
	if !listed {
		for _, n := range refusedByDefault {
			if n.Contains(ip) || n.Contains(nat64Embedded(ip)) {
				return fmt.Errorf("%w: %s is a link-local or cloud metadata address (allow it by address to reach it)", ErrTargetRefused, target)
			}
		}
	}
	if g.restricted() && !listed && !g.hostListed(host) {
		return fmt.Errorf("%w: %s (%s) is not an allowed target", ErrTargetRefused, host, target)
	}
	return nil
}

// nat64 is the well-known NAT64 prefix: on an IPv6-only network,
// 64:ff9b::a9fe:a9fe reaches 169.254.169.254.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// nat64Embedded is the IPv4 address a NAT64 address reaches (the zero Addr
// for another address).
func nat64Embedded(ip netip.Addr) netip.Addr {
	if !nat64.Contains(ip) {
		return netip.Addr{}
	}
	b := ip.As16()
	return netip.AddrFrom4([4]byte(b[12:]))
}

// sameHost reports whether a connection to ip reaches a listener bound to
// own.
func (g *Guard) sameHost(own, ip netip.Addr) bool {
	if ip == own || ip.IsUnspecified() { // 0.0.0.0 and :: reach this host
		return true
	}
	if !own.IsUnspecified() {
		return false
	}
	if ip.IsLoopback() {
		return true
	}
	local, err := g.localAddrs()
	if err != nil {
		return true // cannot tell: refuse rather than reach ourselves
	}
	for _, l := range local {
		if l == ip {
			return true
		}
	}
	return false
}

// CheckURL checks a target URL before any request: its host is resolved
// and every address it has must be allowed. Requests are checked again
// when they dial (a name may resolve differently then); this check gives
// an early answer, e.g. when a subscription is created. A name that does
// not resolve now passes (unless only listed targets are allowed): the
// dial decides.
func (g *Guard) CheckURL(ctx context.Context, target string) error {
	u, err := url.Parse(target)
	if err != nil || u.Host == "" {
		return nil // not a URL: the request fails on its own
	}
	return g.checkHost(ctx, u)
}

func (g *Guard) checkHost(ctx context.Context, u *url.URL) error {
	host := u.Hostname()
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[strings.ToLower(u.Scheme)]
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil
	}
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else if ips, err = net.DefaultResolver.LookupNetIP(ctx, "ip", host); err != nil {
		if g.restricted() && !g.hostListed(host) {
			return fmt.Errorf("%w: %s is not an allowed target", ErrTargetRefused, host)
		}
		return nil
	}
	for _, ip := range ips {
		if err := g.CheckAddr(host, netip.AddrPortFrom(ip, uint16(p))); err != nil {
			return err
		}
	}
	return nil
}

// dialer returns the DialContext of a Client's transport: each address is
// checked just before the connection is made (net.Dialer's Control), with
// the name the URL gave.
func (g *Guard) dialer(base net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			host = addr
		}
		d := base
		d.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("%w: cannot read the dialled address %q", ErrTargetRefused, address)
			}
			return g.CheckAddr(host, ap)
		}
		return d.DialContext(ctx, network, addr)
	}
}

// proxy wraps a transport's Proxy: a request that goes through a proxy
// dials the proxy, not its target, so its target is checked by name here
// (the proxy resolves it; with a proxy, refuse metadata addresses there
// too).
func (g *Guard) proxy(next func(*http.Request) (*url.URL, error)) func(*http.Request) (*url.URL, error) {
	if next == nil {
		return nil
	}
	return func(req *http.Request) (*url.URL, error) {
		p, err := next(req)
		if err != nil || p == nil {
			return p, err
		}
		if err := g.checkHost(req.Context(), req.URL); err != nil {
			return nil, err
		}
		return p, nil
	}
}
