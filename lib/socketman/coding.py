# Content codings of HTTP answers (RFC 9110 section 8.4.1): gzip and deflate
# decoded with what the runtime has, CPython's zlib or MicroPython's deflate
# (which decompresses also where it cannot compress, as on OpenWRT). The
# agent asks for no coding (Accept-Encoding: identity); this module is
# loaded only when a server codes its answer all the same.
KNOWN = ("gzip", "x-gzip", "deflate")


def decode(coding, data, limit):
    """data (bytes) in content coding `coding` (lowercase) -> the decoded
    bytes. ValueError: a coding the agent cannot decode (br, zstd,
    compress, several at once), damaged or cut-short data, or more than
    limit bytes decoded."""
    if coding not in KNOWN:
        raise ValueError("Content-Encoding %s, which the agent cannot decode" % coding)
    # "deflate" is the zlib format (RFC 9110); some servers send raw deflate.
    why = None
    for fmt in (("zlib", "raw") if coding == "deflate" else ("gzip",)):
        try:
            out = _inflate(fmt, data, limit + 1)
        except Exception as e:  # OSError, EOFError; CPython's zlib.error is neither
            why = why or e
            continue
        if len(out) > limit:
            raise ValueError("Content-Encoding %s: over %d bytes decoded" % (coding, limit))
        return out
    raise ValueError("Content-Encoding %s: damaged or cut short (%s)" % (coding, why))


def _inflate(fmt, data, n):
    """Up to n bytes decoded from data in fmt ("gzip", "zlib", "raw");
    an exception when data is damaged or ends too soon."""
    try:
        import zlib
        inflater = zlib.decompressobj({"gzip": 31, "zlib": 15, "raw": -15}[fmt])
    except (ImportError, AttributeError):  # MicroPython: deflate
        import io

        import deflate
        f = deflate.DeflateIO(io.BytesIO(data), {"gzip": deflate.GZIP, "zlib": deflate.ZLIB,
                                                 "raw": deflate.RAW}[fmt])
        return f.read(n)  # EOFError when cut short, OSError when damaged
    out = inflater.decompress(data, n)
    if len(out) < n and not inflater.eof:
        raise EOFError("cut short")
    return out
