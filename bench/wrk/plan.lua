-- plan: the many-users scenarios. Sends the requests of BENCH_PLAN (lines `METHOD user_id path`,
-- made by bench/harness/population.py; a line DELETE takes the next task of BENCH_DELETE_TASKS,
-- each deleted once), this thread's share of them in order, again from the top at the end. Each
-- request carries its user's token from BENCH_TOKENS (lines `user_id token`).
local common = require("common")
local next_planned

setup = common.setup
response = common.record_created
done = common.done

local function read_tokens()
  local tokens = {}
  for _, line in ipairs(common.read_lines("BENCH_TOKENS")) do
    local user, token = line:match("^(%d+) (%S+)$")
    tokens[user] = token
  end
  return tokens
end

local function deletes(tokens)
  if not os.getenv("BENCH_DELETE_TASKS") then
    return function()
      error("bench: the plan deletes but BENCH_DELETE_TASKS is not set")
    end
  end
  local requests = {}
  for i, line in ipairs(common.thread_share(common.read_lines("BENCH_DELETE_TASKS"))) do
    local user, id = common.delete_task(line)
    requests[i] = common.format("DELETE", tokens[user], "/api/" .. user .. "/tasks/" .. id)
  end
  return common.cycle(requests)
end

local function planned(line, n, tokens)
  local method, user, path = line:match("^(%u+) (%d+) (%S+)$")
  local body = nil
  if method == "POST" then
    body = common.create_body(n)
  elseif method == "PUT" then
    body = common.update_body(path:match("(%d+)$"))
  end
  return common.format(method, tokens[user], path, body)
end

function init()
  common.init()
  local tokens = read_tokens()
  local next_delete
  local requests = {}
  for n, line in ipairs(common.thread_share(common.read_lines("BENCH_PLAN"))) do
    if line == "DELETE" then
      next_delete = next_delete or deletes(tokens)
      requests[n] = next_delete
    else
      requests[n] = planned(line, n, tokens)
    end
  end
  local next_line = common.cycle(requests)
  next_planned = function()
    local request = next_line()
    if type(request) == "function" then
      return request()
    end
    return request
  end
end

function request()
  return next_planned()
end
