-- delete: DELETE the writer's tasks made beforehand (BENCH_DELETE_IDS), each exactly once while
-- they last; run.py makes enough of them that the run should not exhaust the supply.
local common = require("common")
local next_request

setup = common.setup
response = common.response
done = common.done

function init()
  common.init()
  local ids = common.thread_share(common.read_ids("BENCH_DELETE_IDS"))
  next_request = common.cycle(common.requests_for_ids(ids, common.delete_request))
end

function request()
  return next_request()
end
