# Writes DATA gzipped by every method this runtime has to OUT/<method>.gz;
# the CPython side checks each with gzip.decompress.
#   python3|micropython gz_methods.py OUTDIR
import sys

_here = __file__.rpartition("/")[0] or "."
sys.path.insert(0, (_here.rpartition("/")[0].rpartition("/")[0] or ".") + "/lib")

from socketman import rt  # noqa: E402
from socketman.stats import gz  # noqa: E402

out = sys.argv[1]
data = b"".join(b'{"device":{"n":%d,"mac":"aa:bb:cc:dd:ee:ff"},"pad":"%s"}\n' % (i, b"y" * (i % 97))
                for i in range(3000))
with open(out + "/input", "wb") as f:
    f.write(data)
have = gz.available()
print("available " + " ".join(have))
for m in gz.METHODS:
    if m not in have:
        print("skip " + m)
        continue
    if m == "system":
        job = gz.SystemGzip(out + "/sys", "gz-test")
        job.start(data)
        path = None
        while path is None:
            rt.sleep_ms(5)
            path = job.poll()
        with open(path, "rb") as f:
            res = f.read()
        # The fallback when gzip fails: stored blocks, file to file.
        with open(job.stored(), "rb") as f:
            stored = f.read()
        with open(out + "/stored-file.gz", "wb") as f:
            f.write(stored)
        print("wrote stored-file %d" % len(stored))
    else:
        res = gz.compress(data, m)
    with open(out + "/" + m + ".gz", "wb") as f:
        f.write(res)
    print("wrote %s %d" % (m, len(res)))
