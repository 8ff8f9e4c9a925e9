-- create: POST new tasks for the writer, recording their ids (BENCH_CREATED_TASKS) for delete.
local common = require("common")
local next_request

setup = common.setup
response = common.record_created
done = common.done

function init()
  common.init()
  next_request = common.cycle(common.create_requests())
end

function request()
  return next_request()
end
