-- Shared by the scenario scripts. bench/run.py runs wrk from this directory (so `require` finds
-- this file) and passes the configuration in BENCH_* environment variables. Each script counts
-- every response by status, and done() prints one `BENCH key=value ...` line for run.py.
local common = {}

-- Per-thread results, collected by done() through thread:get().
statuses = {}
created_ids = {}

local function env(name)
  local value = os.getenv(name)
  if value == nil or value == "" then
    error("bench: " .. name .. " is not set; run the scenarios through bench/run.py")
  end
  return value
end

-- The reader owns the 1000 seeded tasks that list, get, update and toggle use; the writer gets
-- the tasks that create makes and delete removes, so the reader's list stays at 1000 tasks.
common.reader = { id = env("BENCH_READER_ID"), token = env("BENCH_READER_TOKEN") }
common.writer = { id = env("BENCH_WRITER_ID"), token = env("BENCH_WRITER_TOKEN") }

common.description = "A benchmark task with a realistic description: what to do, why it matters, "
  .. "and a note or two for later, about as long as people actually write them."

function common.request(method, user, path, body)
  local headers = { ["Authorization"] = "Bearer " .. user.token }
  if body then
    headers["Content-Type"] = "application/json"
  end
  return wrk.format(method, "/api/" .. user.id .. "/tasks" .. path, headers, body)
end

function common.list_request()
  return common.request("GET", common.reader, "")
end

-- A thousand POSTs of new tasks for the writer, each with its own title.
function common.create_requests()
  local requests = {}
  for n = 1, 1000 do
    local body =
      string.format('{"title":"Created task %d","description":"%s"}', n, common.description)
    requests[n] = common.request("POST", common.writer, "", body)
  end
  return requests
end

-- One prepared request per id: building requests while the clock runs would load the client.
function common.requests_for_ids(ids, make)
  local requests = {}
  for i, id in ipairs(ids) do
    requests[i] = make(id)
  end
  return requests
end

-- Makes the calling script a scenario of `make(id)` requests on the reader's seeded tasks, a
-- random one each time (get, update, toggle): defines its init() and request().
function common.random_seeded_task(make)
  local requests
  init = function()
    common.init()
    requests = common.requests_for_ids(common.read_ids("BENCH_READER_IDS"), make)
  end
  request = function()
    return common.random_item(requests)
  end
end

function common.get_request(id)
  return common.request("GET", common.reader, "/" .. id)
end

function common.update_request(id)
  local body = string.format('{"title":"Seed task %s, edited","is_completed":true}', id)
  return common.request("PUT", common.reader, "/" .. id, body)
end

function common.toggle_request(id)
  return common.request("PATCH", common.reader, "/" .. id .. "/complete")
end

function common.delete_request(id)
  return common.request("DELETE", common.writer, "/" .. id)
end

function common.read_ids(variable)
  local ids = {}
  for line in io.lines(env(variable)) do
    ids[#ids + 1] = line
  end
  return ids
end

-- This thread's share of the ids: every thread_count-th, starting at its own index.
function common.thread_share(ids)
  local share = {}
  for i = thread_index, #ids, tonumber(env("BENCH_THREADS")) do
    share[#share + 1] = ids[i]
  end
  return share
end

function common.random_item(items)
  return items[math.random(#items)]
end

-- The next item each call, wrapping around at the end.
function common.cycle(items)
  local next_index = 0
  return function()
    next_index = next_index % #items + 1
    return items[next_index]
  end
end

local threads = {}

function common.setup(thread)
  threads[#threads + 1] = thread
  thread:set("thread_index", #threads)
end

function common.init()
  math.randomseed(thread_index)
end

function common.response(status)
  statuses[status] = (statuses[status] or 0) + 1
end

function common.record_created(status, headers, body)
  common.response(status)
  if status == 201 then
    created_ids[#created_ids + 1] = body:match('"id"%s*:%s*(%d+)')
  end
end

local function write_lines(path, lines)
  local file = assert(io.open(path, "w"))
  for _, line in ipairs(lines) do
    file:write(line, "\n")
  end
  file:close()
end

local function collect()
  local merged, created = {}, {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      merged[status] = (merged[status] or 0) + count
    end
    for _, id in ipairs(thread:get("created_ids")) do
      created[#created + 1] = id
    end
  end
  return merged, created
end

function common.done(summary, latency)
  local merged, created = collect()
  local created_path = os.getenv("BENCH_CREATED_IDS")
  if created_path and created_path ~= "" then
    write_lines(created_path, created)
  end
  local fields = {
    "requests=" .. summary.requests,
    "duration_us=" .. summary.duration,
    "bytes=" .. summary.bytes,
    "connect_errors=" .. summary.errors.connect,
    "read_errors=" .. summary.errors.read,
    "write_errors=" .. summary.errors.write,
    "timeouts=" .. summary.errors.timeout,
    "p50_us=" .. latency:percentile(50),
    "p95_us=" .. latency:percentile(95),
    "p99_us=" .. latency:percentile(99),
    "max_us=" .. latency.max,
    "mean_us=" .. latency.mean,
  }
  for status, count in pairs(merged) do
    fields[#fields + 1] = "status_" .. status .. "=" .. count
  end
  io.write("BENCH ", table.concat(fields, " "), "\n")
end

return common
