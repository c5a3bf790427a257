"""Small helpers the benchmarks share (not part of the agent)."""


def pct(values, q):
    """The q-th percentile (nearest rank) of values; None when empty."""
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100.0 * (len(s) - 1))))]


def read(path, default=None):
    """The bytes of a file (a /proc file that may vanish), or default."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return default
