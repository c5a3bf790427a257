"""A fake OpenWRT device made of real captures (tests_cpython/fixtures/openwrt):
executables first in PATH (fakebin/) answer from a directory, /proc and /etc
files live under a sysroot."""
import os
import shutil

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(HERE, "fixtures", "openwrt")
FAKEBIN = os.path.join(HERE, "fakebin")

# What a fake router answers: ubus captures by (path.method[.device]), text
# command output, /proc and /etc files under the sysroot, the lease file.
ROUTER = {
    "ubus": {
        "system.board": "openwrt-18.06.5_tplink-tl-wr1043nd-v4/system_board.json",
        "system.info": "openwrt-19.07-snapshot-r10675_x86-64-swap/system_info.json",
        "network.interface.wan.status": "unknown-device_dhcp-wan-eth0.1/network_interface_wan_status.json",
        "iwinfo.info.mesh0": "openwisp-pr26_mesh-mt7603e/iwinfo_info_mesh0.json",
    },
    "ubus_text": {"iwinfo.devices": '{\n\t"devices": [\n\t\t"mesh0",\n\t\t"wlan0"\n\t]\n}\n'},
    "iwinfo": {
        "wlan0.info": "siflower-sf19a28_openwrt-18.06-sdk/iwinfo.txt",
        "wlan0.scan": "openwrt-snapshot-2024_luci-6839-5ghz-scan/iwinfo_phy1_scan_first2cells.txt",
        "mesh0.scan": "openwrt-15.05.1_widora-mt7688-wext/iwinfo_ra0_scan.txt",
        "mesh0.assoclist": "libremesh-docs_80211s-mesh-2025/iwinfo_wlan0-mesh_assoclist.txt",
    },
    "iw": {"wlan0.station_dump": "siflower-sf19a28_openwrt-18.06-sdk/iw_wlan0_station_dump.txt"},
    "root": {
        "proc/loadavg": "non-openwrt_zte-zx279128-arm-router/proc_loadavg.txt",
        "proc/meminfo": "openwrt-arm-2019_sysinfo-issue-164/proc_meminfo.txt",
        "proc/uptime": "non-openwrt_zte-zx279128-arm-router/proc_uptime.txt",
        "proc/net/dev": "non-openwrt_zte-zx279128-arm-router/proc_net_dev.txt",
        "etc/openwrt_release": "openwrt-24.10.0_openwrt-one-filogic/openwrt_release",
    },
    "leases": "openwrt-2018_mentohust-campus-router/dhcp.leases",
}

# The three routers of `make demo` (tools/demo.py), each built around a
# different real device: its board, its own wireless captures (split per
# interface from the capture of plain `iwinfo` by "iwinfo_blocks"), and
# different lease files and /proc captures.
DEMO_ROUTERS = {
    "wr1043nd": ROUTER,
    "covr-x1860": {
        "ubus": {
            "system.board": "openwrt-23.05-snapshot_dlink-covr-x1860-a1/system_board.json",
            "system.info": "openwrt-15.05.1_oolite-v8-mt7621/system_info.json",
            "network.interface.wan.status": "unknown-device_dhcp-wan-eth0.1/network_interface_wan_status.json",
        },
        "iwinfo_blocks": "openwisp-docs-mesh_mt7915e/iwinfo.txt",
        "iw": {"mesh0.station_dump": "openwisp-docs-mesh_mt7915e/iw_mesh0_station_dump.txt"},
        "root": {
            "proc/loadavg": "non-openwrt_zte-zx279128-arm-router/proc_loadavg.txt",
            "proc/meminfo": "openwrt-arm-2019_sysinfo-issue-164/proc_meminfo.txt",
            "proc/uptime": "non-openwrt_zte-zx279128-arm-router/proc_uptime.txt",
            "proc/net/dev": "non-openwrt_zte-zx279128-arm-router/proc_net_dev.txt",
            "etc/openwrt_release": "openwrt-23.05-snapshot_x86-64/openwrt_release",
        },
        "leases": "openwrt-2021_fyp-router/dhcp.leases",
    },
    "rpi4": {
        "ubus": {
            "system.board": "openwrt-21.02.0-rc1_raspberrypi-4b/system_board.json",
            "network.interface.wan.status": "unknown-device_dhcp-wan-eth0.1/network_interface_wan_status.json",
        },
        "iwinfo_blocks": "openwrt-unknown-19.07to22.03_raspberrypi-brcmfmac-usb/iwinfo.txt",
        "iwinfo": {"wlan0.assoclist": "libremesh-docs_80211s-mesh-2025/iwinfo_wlan0-mesh_assoclist.txt"},
        "root": {
            "proc/loadavg": "non-openwrt_zte-zx279128-arm-router/proc_loadavg.txt",
            "proc/meminfo": "non-openwrt_zte-zx279128-arm-router/proc_meminfo.txt",
            "proc/uptime": "non-openwrt_zte-zx279128-arm-router/proc_uptime.txt",
            "proc/net/dev": "non-openwrt_zte-zx279128-arm-router/proc_net_dev.txt",
            "etc/openwrt_release": "openwrt-19.07.1_raspberrypi-3b-plus/openwrt_release",
        },
        "leases": "lede-2017_wrtbwmon-user/dhcp.leases",
    },
}

# The default route the WAN capture implies (gateway 192.168.2.1 on eth0.1).
ROUTE = ("Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
         "eth0.1\t00000000\t0102A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
         "eth0.1\t0002A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n")
NO_ROUTE = ROUTE.splitlines()[0] + "\n" + ROUTE.splitlines()[2] + "\n"


def make(tmp, profile=None, route=True):
    """(env additions, config additions) for an agent on this fake device."""
    profile = profile or ROUTER
    base = os.path.join(str(tmp), "fake-openwrt")
    root = os.path.join(str(tmp), "sysroot")
    for sub in ("ubus", "iwinfo", "iw"):
        os.makedirs(os.path.join(base, sub), exist_ok=True)
    for kind in ("ubus", "iwinfo", "iw"):
        for name, rel in profile.get(kind, {}).items():
            ext = ".json" if kind == "ubus" else ".txt"
            shutil.copy(os.path.join(FIX, rel), os.path.join(base, kind, name + ext))
    if profile.get("iwinfo_blocks"):
        # Plain `iwinfo` lists every interface; `iwinfo DEV info` is DEV's block.
        with open(os.path.join(FIX, profile["iwinfo_blocks"])) as f:
            text = f.read()
        with open(os.path.join(base, "iwinfo", "all.txt"), "w") as f:
            f.write(text)
        for block in text.strip("\n").split("\n\n"):
            name = block.split(None, 1)[0]
            with open(os.path.join(base, "iwinfo", name + ".info.txt"), "w") as f:
                f.write(block + "\n")
    for name, content in profile.get("ubus_text", {}).items():
        with open(os.path.join(base, "ubus", name + ".json"), "w") as f:
            f.write(content)
    for rel_dst, rel_src in profile.get("root", {}).items():
        dst = os.path.join(root, rel_dst)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy(os.path.join(FIX, rel_src), dst)
    set_route(root, route)
    leases = os.path.join(str(tmp), "dhcp.leases")
    if profile.get("leases"):
        shutil.copy(os.path.join(FIX, profile["leases"]), leases)
    env = {"PATH": FAKEBIN + os.pathsep + os.environ.get("PATH", ""), "FAKE_OPENWRT": base}
    return env, {"sysroot": root, "leases_file": leases}


def set_route(root, up):
    """Give the fake device a default route, or take it away."""
    path = os.path.join(root, "proc", "net", "route")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(ROUTE if up else NO_ROUTE)
    os.replace(tmp, path)
