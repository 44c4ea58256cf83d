-- Merge state fields newer-wins, field by field, for several devices in one call.
-- KEYS: one state hash per device, then the GEO set, then the live stream.
-- ARGV: stream maxlen, then per device: device id, field count, (field name, encoded value)...
-- An encoded value is "<ts_ms>:<boot>:<seq>:<json>"; (ts_ms, boot, seq) orders values.
-- Returns the number of devices whose state changed.
local function order(encoded)
  local ts, boot, seq = string.match(encoded, '^(%d+):(%d+):(%d+):')
  return tonumber(ts), tonumber(boot), tonumber(seq)
end

local function newer(candidate, current)
  local t1, b1, s1 = order(candidate)
  local t2, b2, s2 = order(current)
  if t1 ~= t2 then return t1 > t2 end
  if b1 ~= b2 then return b1 > b2 end
  return s1 > s2
end

local devices = #KEYS - 2
local geo = KEYS[devices + 1]
local stream = KEYS[devices + 2]
local maxlen = ARGV[1]
local i = 2
local changed_devices = 0
for d = 1, devices do
  local key = KEYS[d]
  local device = ARGV[i]
  local count = tonumber(ARGV[i + 1])
  i = i + 2
  local changes = {}
  for _ = 1, count do
    local name, encoded = ARGV[i], ARGV[i + 1]
    i = i + 2
    local current = redis.call('HGET', key, name)
    if (not current) or newer(encoded, current) then
      redis.call('HSET', key, name, encoded)
      changes[#changes + 1] = name
      changes[#changes + 1] = encoded
      if name == 'pos' then
        local pos = cjson.decode(string.match(encoded, '^%d+:%d+:%d+:(.*)$'))
        -- Redis GEO covers latitudes up to ±85.05112878 (Web Mercator).
        if pos.lat >= -85.05112878 and pos.lat <= 85.05112878 then
          redis.call('GEOADD', geo, pos.lon, pos.lat, device)
        end
      end
    end
  end
  if #changes > 0 then
    changed_devices = changed_devices + 1
    redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'd', device, 'k', 'state', unpack(changes))
  end
end
return changed_devices
