-- Shared by the scenario scripts. bench/run.py runs wrk from this directory (so `require` finds
-- this file) and passes the configuration in BENCH_* environment variables. Each script counts
-- every response by status, and done() prints one `BENCH key=value ...` line for run.py.
local common = {}

-- Per-thread results, collected by done() through thread:get(): counts by status, and the
-- tasks made, as lines `user_id task_id`.
statuses = {}
created_tasks = {}

function common.env(name)
  local value = os.getenv(name)
  if value == nil or value == "" then
    error("bench: " .. name .. " is not set; run the scenarios through bench/run.py")
  end
  return value
end

-- The reader owns the 1000 seeded tasks that list, get, update and toggle use; the writer gets
-- the tasks that create makes and delete removes, so the reader's list stays at 1000 tasks.
-- (The many-users scenarios of plan.lua have neither: their users and tokens come from files.)
if os.getenv("BENCH_READER_ID") then
  common.reader = { id = common.env("BENCH_READER_ID"), token = common.env("BENCH_READER_TOKEN") }
  common.writer = { id = common.env("BENCH_WRITER_ID"), token = common.env("BENCH_WRITER_TOKEN") }
end

common.description = "A benchmark task with a realistic description: what to do, why it matters, "
  .. "and a note or two for later, about as long as people actually write them."

function common.format(method, token, path, body)
  local headers = { ["Authorization"] = "Bearer " .. token }
  if body then
    headers["Content-Type"] = "application/json"
  end
  return wrk.format(method, path, headers, body)
end

function common.request(method, user, path, body)
  return common.format(method, user.token, "/api/" .. user.id .. "/tasks" .. path, body)
end

function common.create_body(n)
  return string.format('{"title":"Created task %d","description":"%s"}', n, common.description)
end

function common.update_body(id)
  return string.format('{"title":"Seed task %s, edited","is_completed":true}', id)
end

function common.list_request()
  return common.request("GET", common.reader, "")
end

-- A thousand POSTs of new tasks for the writer, each with its own title.
function common.create_requests()
  local requests = {}
  for n = 1, 1000 do
    requests[n] = common.request("POST", common.writer, "", common.create_body(n))
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
    requests = common.requests_for_ids(common.read_lines("BENCH_READER_IDS"), make)
  end
  request = function()
    return common.random_item(requests)
  end
end

function common.get_request(id)
  return common.request("GET", common.reader, "/" .. id)
end

function common.update_request(id)
  return common.request("PUT", common.reader, "/" .. id, common.update_body(id))
end

function common.toggle_request(id)
  return common.request("PATCH", common.reader, "/" .. id .. "/complete")
end

-- A line `user_id task_id` of BENCH_DELETE_TASKS; the one-user scenarios delete the writer's.
function common.delete_task(line)
  local user, id = line:match("^(%d+) (%d+)$")
  return user, id
end

function common.delete_request(line)
  local _, id = common.delete_task(line)
  return common.request("DELETE", common.writer, "/" .. id)
end

function common.read_lines(variable)
  local lines = {}
  for line in io.lines(common.env(variable)) do
    lines[#lines + 1] = line
  end
  return lines
end

-- This thread's share of the items: every thread_count-th, starting at its own index.
function common.thread_share(ids)
  local share = {}
  for i = thread_index, #ids, tonumber(common.env("BENCH_THREADS")) do
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
    local user = body:match('"user_id"%s*:%s*(%d+)')
    created_tasks[#created_tasks + 1] = user .. " " .. body:match('"id"%s*:%s*(%d+)')
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
    for _, line in ipairs(thread:get("created_tasks")) do
      created[#created + 1] = line
    end
  end
  return merged, created
end

function common.done(summary, latency)
  local merged, created = collect()
  local created_path = os.getenv("BENCH_CREATED_TASKS")
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
