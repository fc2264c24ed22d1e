//! The Lua scripts of the cluster store. Each runs on the one shard that serves its keys
//! (all its keys share a hash tag, so one slot), atomically: a check and the write it
//! guards cannot be separated by another client's command, which is what WATCH gave the
//! single-Redis store and what a cluster cannot give across slots.
//!
//! Every script answers `OK`, or `FENCED` (a newer owner claimed the partition: nothing
//! written), or `LOST` (what this writer wrote before is not there: the shard lost data;
//! nothing written), or, for a checkpoint, `CLAIM_LOST` (the partition's owner epoch is
//! gone or older than the writer's: the shard lost the writer's claim, no one else made
//! one; nothing written).

/// What a guarded write found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Written,
    Fenced,
    Lost,
    ClaimLost,
}

impl Outcome {
    pub fn parse(reply: &redis::Value) -> anyhow::Result<Outcome> {
        let text = match reply {
            redis::Value::SimpleString(s) => s.as_str(),
            redis::Value::BulkString(b) => std::str::from_utf8(b).unwrap_or(""),
            redis::Value::ServerError(e) => anyhow::bail!(
                "a cluster write failed on the server: {e:?}; was a series deleted or \
                 altered while the host ran?"
            ),
            other => anyhow::bail!("unexpected reply of a cluster write script: {other:?}"),
        };
        match text {
            "OK" => Ok(Outcome::Written),
            "FENCED" => Ok(Outcome::Fenced),
            "LOST" => Ok(Outcome::Lost),
            "CLAIM_LOST" => Ok(Outcome::ClaimLost),
            other => anyhow::bail!("unexpected reply of a cluster write script: {other:?}"),
        }
    }
}

/// Creates a series with duplicate policy LAST, or makes an existing one's settings ours
/// (a user's Redis may hold a series made by hand).
/// KEYS[1]: the series. ARGV[1]: RETENTION in ms; ARGV[2..]: label names and values.
pub const CREATE_SERIES: &str = r"
local args = {KEYS[1], 'RETENTION', ARGV[1], 'DUPLICATE_POLICY', 'LAST', 'LABELS'}
for i = 2, #ARGV do args[#args + 1] = ARGV[i] end
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('TS.CREATE', unpack(args))
else
  redis.call('TS.ALTER', unpack(args))
end
return 'OK'
";

/// Writes one site's samples, fenced: a site's fence holds the owner epoch of the last
/// writer; a writer with an older epoch is refused, a newer one moves the fence on.
/// KEYS[1]: the site's fence; KEYS[2..n+1]: the series of the n samples, in order.
/// ARGV[1]: the writer's owner epoch ('0': not fenced, a store used without claims);
/// ARGV[2]: '1' if this writer has set this fence before (so it must be there);
/// ARGV[3..]: ts and value of each sample.
pub const WRITE_SITE: &str = r"
local epoch = tonumber(ARGV[1])
if epoch > 0 then
  local fence = redis.call('GET', KEYS[1])
  if not fence then
    if ARGV[2] == '1' then return 'LOST' end
    redis.call('SET', KEYS[1], ARGV[1])
  else
    local held = tonumber(fence)
    if held > epoch then return 'FENCED' end
    if held < epoch then redis.call('SET', KEYS[1], ARGV[1]) end
  end
end
if #KEYS < 2 then return 'OK' end
local args = {}
for i = 2, #KEYS do
  args[#args + 1] = KEYS[i]
  args[#args + 1] = ARGV[2 * i - 1]
  args[#args + 1] = ARGV[2 * i]
end
local replies = redis.call('TS.MADD', unpack(args))
for _, reply in ipairs(replies) do
  if type(reply) == 'table' and reply.err then return reply end
end
return 'OK'
";

/// Writes a partition's checkpoint if the writer still owns the partition and the
/// checkpoint is the one it wrote last. (Epochs are compared as numbers: they fit a Lua
/// double exactly, being milliseconds since 1970.)
/// KEYS[1]: the owner key; KEYS[2]: the checkpoint hash.
/// ARGV[1]: the writer's owner epoch ('0': not fenced); ARGV[2]: the head this writer wrote
/// last ('': none, or this write replaces the hash); ARGV[3]: '1' to replace the hash;
/// ARGV[4], ARGV[5]: the head field and its new value; ARGV[6]: n, the number of changed
/// site fields; ARGV[7..6+2n]: their names and values; the rest: site fields to delete.
pub const WRITE_CHECKPOINT: &str = r"
if ARGV[1] ~= '0' then
  local owner = tonumber(redis.call('GET', KEYS[1]) or '0')
  local mine = tonumber(ARGV[1])
  if owner > mine then return 'FENCED' end
  if owner < mine then return 'CLAIM_LOST' end
end
if ARGV[2] ~= '' and redis.call('HGET', KEYS[2], ARGV[4]) ~= ARGV[2] then return 'LOST' end
if ARGV[3] == '1' then redis.call('DEL', KEYS[2]) end
local set = {KEYS[2], ARGV[4], ARGV[5]}
local n = tonumber(ARGV[6])
for i = 7, 6 + 2 * n do set[#set + 1] = ARGV[i] end
redis.call('HSET', unpack(set))
if #ARGV > 6 + 2 * n then
  local del = {KEYS[2]}
  for i = 7 + 2 * n, #ARGV do del[#del + 1] = ARGV[i] end
  redis.call('HDEL', unpack(del))
end
return 'OK'
";

/// Deletes a partition's checkpoint (its samples on another shard were lost, so it must be
/// rebuilt from the start of the topic), if the writer still owns the partition.
/// KEYS[1]: the owner key; KEYS[2]: the checkpoint. ARGV[1]: the writer's owner epoch.
pub const DROP_CHECKPOINT: &str = r"
if ARGV[1] ~= '0' and redis.call('GET', KEYS[1]) ~= ARGV[1] then return 'FENCED' end
redis.call('DEL', KEYS[2])
return 'OK'
";
