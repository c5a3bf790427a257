# One full stats cycle, as the agent does it: collect on the fake OpenWRT
# device (real fork/exec of the stand-in ubus/iwinfo/iw), build the document,
# spool it N times, take a batch, gzip it, POST it to a local server.
# Runs under CPython and MicroPython; prints one JSON line of figures.
#   FAKE_OPENWRT=... PATH=fakebin:$PATH  stats_cycle.py WORKDIR SYSROOT LEASES URL METHOD DOCS
import gc
import json
import sys

_here = __file__.rpartition("/")[0] or "."
sys.path.insert(0, (_here.rpartition("/")[0] or ".") + "/lib")
if len(sys.argv) > 7:
    sys.path.insert(0, sys.argv[7])  # the .mpy bundle's lib/

from socketman import http, rt  # noqa: E402
from socketman.stats import doc, gz  # noqa: E402
from socketman.stats.collect import Collector  # noqa: E402
from socketman.stats.spool import Spool  # noqa: E402

work, sysroot, leases, url, method, ndocs = sys.argv[1:7]
ndocs = int(ndocs)
cfg = {"sysroot": sysroot, "scan": 1, "leases_file": leases, "mac": "02:00:00:00:be:02"}
gc.collect()
heap0 = gc.mem_alloc() if hasattr(gc, "mem_alloc") else 0

t0 = rt.ms()
c = Collector(cfg, work + "/collect")
c.start()
parts = None
while parts is None:
    rt.sleep_ms(1)
    parts = c.poll()
collect_ms = rt.ms() - t0

line = doc.line(doc.build(parts, cfg["mac"], rt.now(), 9, []))
sp = Spool(work + "/spool.jsonl", 1 << 20)
for i in range(ndocs):
    # Documents of one upload differ in their clock and counters.
    sp.append(line.replace(b'"created_at":', b'"created_at":%d' % i + b',"n":'))
batch = sp.batch()
t1 = rt.ms()
if method == "system":
    job = gz.SystemGzip(work + "/gz", "bench-gz")
    job.start(batch)
    body = None
    while body is None:
        rt.sleep_ms(1)
        body = job.poll()
else:
    body = gz.compress(batch, method)
gzip_ms = rt.ms() - t1
ctype, chunks = http.multipart("data", "archive.gz", "application/gzip", body)
wire = sum(len(x) for x in chunks)
# Driven the way the agent's loop drives it (blocking.py would also load
# the MQTT client, which this cycle does not need).
call = http.Call("POST", url, chunks, {"Content-Type": ctype}).start()
while not call.done():
    w = call.wants()
    call.step(rt.wait_io(w[0][0], w[0][1], 50) if w else 0)
    call.service()
ok = call.response is not None and call.response.status_code == 200
sp.commit()
gc.collect()
heap1 = gc.mem_alloc() if hasattr(gc, "mem_alloc") else 0
print(json.dumps({"ok": ok, "collect_ms": collect_ms, "gzip_ms": gzip_ms, "doc_bytes": len(line),
                  "batch_bytes": len(batch), "gzip_bytes": len(body), "wire_bytes": wire,
                  "docs": ndocs, "heap_kept": heap1 - heap0}))
