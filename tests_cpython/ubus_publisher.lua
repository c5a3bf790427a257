-- Publishes objects on a real ubusd for the tests, through OpenWRT's own
-- Lua 5.1 bindings: lua5.1 ubus_publisher.lua SOCKET OBJECTS.lua UBUS_DIR
--
-- OBJECTS.lua (written by helpers/ubus.py from the real captures of
-- ../shared/fixtures/openwrt) returns { object = { method = answer } }.
-- An answer { __by_device = { dev = answer } } answers for the "device"
-- argument, as rpcd's iwinfo does, and with status NOT_FOUND (4) for a
-- device it has nothing for, as rpcd does for a device it cannot open.
--
-- What the bindings change on the way (nothing the agent's parsers read):
-- an empty JSON object becomes an empty array, JSON null drops its key,
-- a fraction is cut to an integer, and keys come in Lua's table order.
package.cpath = arg[3] .. "/lib/lua/?.so;" .. package.cpath
local ubus = require "ubus"
local uloop = require "uloop"

uloop.init()
local conn = ubus.connect(arg[1])
if not conn then
    error("cannot connect to ubusd at " .. arg[1])
end

local NOT_FOUND = 4
local objects = dofile(arg[2])
local spec = {}
for name, methods in pairs(objects) do
    local m = {}
    for method, answer in pairs(methods) do
        m[method] = { function(req, msg)
            local a = answer
            if answer.__by_device then
                a = msg and msg.device and answer.__by_device[msg.device]
                if a == nil then
                    return NOT_FOUND
                end
            end
            conn:reply(req, a)
            return 0
        end, {} }
    end
    spec[name] = m
end
conn:add(spec)
print("ready")
io.stdout:flush()
uloop.run()  -- until ubusd goes (libubus ends the loop when the connection is lost)
