"""Small helpers the store's query modules share: the server's clock, a
row as a plain dict, and text cut to a column's width."""
import time


def now():
    """The server's clock: unix seconds (int)."""
    return int(time.time())


def row(r):
    """A SQLAlchemy Row -> dict (None stays None)."""
    return dict(r._mapping) if r is not None else None


def text(v, n):
    """v as str for a column of n characters: None -> "", NUL written out
    (PostgreSQL refuses it in text), cut to n."""
    return str(v or "").replace("\x00", "\\x00")[:n]
