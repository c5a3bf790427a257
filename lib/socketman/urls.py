# URL helpers shared by config checks and the HTTP client.

_SAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"


def quote(s):
    """URL-escape s (str or anything str() takes): all but A-Z a-z 0-9 - . _ ~."""
    out = []
    for ch in str(s).encode():
        c = chr(ch)
        out.append(c if c in _SAFE else "%%%02X" % ch)
    return "".join(out)


def split(url):
    """'https://host:8443/p?q' -> ('https', 'host', 8443, '/p?q'); ValueError
    when it is not an http(s) URL with a host."""
    if not isinstance(url, str):
        raise ValueError("not a string")
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in ("http", "https"):
        raise ValueError("not an http:// or https:// URL")
    i = 0
    while i < len(rest) and rest[i] not in "/?#":
        i += 1
    netloc, path = rest[:i], rest[i:]
    path = path.partition("#")[0]
    if not path.startswith("/"):
        path = "/" + path
    if "@" in netloc:
        raise ValueError("user:password@ in URLs is not supported")
    host, port = _host_port(netloc, 443 if scheme == "https" else 80)
    for ch in path:
        if ch <= " " or ch == "\x7f":
            raise ValueError("space or control character in URL")
    return scheme, host, port, path


def _host_port(netloc, default):
    if netloc.startswith("["):  # [::1]:8080
        host, sep, rest = netloc[1:].partition("]")
        if not sep:
            raise ValueError("bad IPv6 host")
        port = rest[1:] if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            raise ValueError("bad IPv6 host")
    else:
        host, _, port = netloc.partition(":")
    if not host:
        raise ValueError("no host in URL")
    for ch in host:
        if ch <= " " or ch in "/\\?#@\x7f":
            raise ValueError("bad host in URL")
    if port:
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("bad port in URL")
        return host, int(port)
    return host, default


def add_query(url, pairs):
    """url with the (name, value) pairs appended to its query."""
    q = "&".join(quote(k) + "=" + quote(v) for k, v in pairs)
    if not q:
        return url
    base, _, frag = url.partition("#")
    sep = "&" if "?" in base else "?"
    if base.endswith("?") or base.endswith("&"):
        sep = ""
    return base + sep + q + ("#" + frag if frag else "")
