# Start-up calls of PROTOCOL 5: the boot URL (GET once; its body is never
# run) and the boot command (run once, in the background like a job).
from . import http, log, proc, urls


def boot(cfg, start_call):
    """Call boot_url and start boot_cmd, when set. start_call(call, on_done)
    runs an HTTP call. The Batch running boot_cmd, or None."""
    if cfg["boot_url"]:
        url = urls.add_query(cfg["boot_url"], [("access_token", cfg["token"]), ("mac", cfg["mac"])])
        start_call(http.Call("GET", url), _boot_done)
    if not cfg["boot_cmd"]:
        return None
    log.info("boot: running boot_cmd")
    batch = proc.Batch(cfg["cache_dir"] + "/boot", "boot-" + cfg["mac"].replace(":", ""), 3600000)
    batch.start(["{\n%s\n} > out 2>&1" % cfg["boot_cmd"]])
    return batch


def _boot_done(call):
    if call.error:
        log.warn("boot: %s" % call.error)
    else:
        log.info("boot: %s answered %d" % (call.url.partition("?")[0], call.response.status_code))
