-- Merge state fields newer-wins, field by field, for several devices in one call.
-- KEYS: one state hash per device, then the GEO set, the live stream and the last-seen sorted set.
-- ARGV: stream maxlen, now (ms), the encoded `presence` field meaning "online by heartbeat", then per
-- device: device id, seen (1 when it sent telemetry now), field count, (field name, encoded value)...
-- An encoded value is "<ts_ms>:<boot>:<seq>:<json>"; (ts_ms, boot, seq) orders values.
-- Returns, for every device whose state changed: device id, field count, then its whole state
-- (field, value)..., so the caller can republish it.
-- Live entries (one XADD each, only when there is something to say): `state` with the fields that won,
-- `presence` when presence changed (its own entry, so a client can tell a device going offline from a
-- reading), and `correction` with the fields of a late sample: older than what is held, so the state
-- keeps the newer value, but announced so that live charts can fill in history they missed.
-- A value equal to the one held (a redelivery) is neither: it is dropped silently.
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

local function value_of(encoded)
  return cjson.decode(string.match(encoded, '^%d+:%d+:%d+:(.*)$'))
end

local devices = #KEYS - 3
local geo = KEYS[devices + 1]
local stream = KEYS[devices + 2]
local seen_set = KEYS[devices + 3]
local maxlen = ARGV[1]
local now = ARGV[2]
local online_by_heartbeat = ARGV[3]
local i = 4
local result = {}
for d = 1, devices do
  local key = KEYS[d]
  local device = ARGV[i]
  local seen = ARGV[i + 1] == '1'
  local count = tonumber(ARGV[i + 2])
  i = i + 3
  local changes = {}
  local presence_change = nil
  local late = {}
  for _ = 1, count do
    local name, encoded = ARGV[i], ARGV[i + 1]
    i = i + 2
    local current = redis.call('HGET', key, name)
    if (not current) or newer(encoded, current) then
      redis.call('HSET', key, name, encoded)
      if name == 'presence' then
        presence_change = encoded
      else
        changes[#changes + 1] = name
        changes[#changes + 1] = encoded
      end
      if name == 'pos' then
        local pos = value_of(encoded)
        -- Redis GEO covers latitudes up to ±85.05112878 (Web Mercator).
        if pos.lat >= -85.05112878 and pos.lat <= 85.05112878 then
          redis.call('GEOADD', geo, pos.lon, pos.lat, device)
        end
      end
    elseif name ~= 'presence' and newer(current, encoded) then
      -- Presence is ordered by server time and a replayed retained status is ordered first on purpose:
      -- an older presence is not a late reading, so only readings become corrections.
      late[#late + 1] = name
      late[#late + 1] = encoded
    end
  end
  if seen then
    redis.call('ZADD', seen_set, now, device)
    -- Telemetry from a device of unknown presence, or again after silence, means it is online;
    -- an offline that the device itself declared (its status or Last Will) stands.
    local presence = redis.call('HGET', key, 'presence')
    local revive = not presence
    if presence then
      local p = value_of(presence)
      revive = p.state == 'offline' and p.source == 'heartbeat'
    end
    if revive then
      redis.call('HSET', key, 'presence', online_by_heartbeat)
      presence_change = online_by_heartbeat
    end
  end
  if #changes > 0 then
    redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'd', device, 'k', 'state', unpack(changes))
  end
  if presence_change then
    redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'd', device, 'k', 'presence', 'presence', presence_change)
  end
  if #late > 0 then
    redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'd', device, 'k', 'correction', unpack(late))
  end
  if #changes > 0 or presence_change then
    local whole = redis.call('HGETALL', key)
    result[#result + 1] = device
    result[#result + 1] = #whole / 2
    for n = 1, #whole do result[#result + 1] = whole[n] end
  end
end
return result
