-- delete: DELETE the writer's tasks made beforehand (BENCH_DELETE_TASKS), each exactly once while
-- they last; run.py makes enough of them that the run should not exhaust the supply.
local common = require("common")
local next_request

setup = common.setup
response = common.response
done = common.done

function init()
  common.init()
  local ids = common.thread_share(common.read_lines("BENCH_DELETE_TASKS"))
  next_request = common.cycle(common.requests_for_ids(ids, common.delete_request))
end

function request()
  return next_request()
end
