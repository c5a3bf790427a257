VERSION = "0.1.0"

# Which module is loaded when. On MicroPython a module's code lives in the
# heap, a router's scarcest resource, so what a device never uses is never
# imported (function-level imports) and what only the start needs is
# unloaded (agent._unload). tests_cpython/test_loaded_modules.py runs the
# agent with a plain config (MQTT without TLS, stats over http) and checks
# that it holds exactly the first two rows.
#
# always:        agent answers conn dns events fs http httpresp inflight jobs jobs.dispatch
#                jobs.queue jobs.reporter jobs.runner log loop mqtt mqttpacket ping
#                proc reach rt session strictjson text urls
# once online:   cycle monitor recovery watch stats stats.pipeline stats.collect
#                stats.doc stats.spool stats.upload stats.gz stats.system stats.wan
#                stats.wifi stats.dhcp stats.values stats.survey
# on demand:     tls tlsstream (a TLS broker, an https URL, client_cert; the
#                second on MicroPython only), coding (an HTTP answer with
#                Content-Encoding), jobs.netjob (a network job),
#                jobs.sign (job_key, or a signed job remembered),
#                jobs.tunnel ws wsframe (the first tunnel job; tls too for wss),
#                jobs.update untar (an update job: PROTOCOL 10), jobs.trial (a
#                state in update_dir: a version on trial, a PROCESSED owed), slots
#                (those two; and main.py's choice of the tree at start, which
#                main.py drops again before the agent runs)
#                ubus ubusmsg blobmsg ubusstatus (ubus_socket set, the default: on
#                a router from the start; the tests' plain config has it "")
# at start then unloaded:
#                cli config provision (-b; kept for boot_url and boot_cmd)
# never on a router:
#                blocking (umqtt's and urequests' blocking calls: not in the bundle)
