-- get: GET one of the 1000 seeded tasks, chosen at random.
local common = require("common")
local requests

setup = common.setup
response = common.response
done = common.done

function init()
  common.init()
  requests = common.requests_for_ids(common.read_ids("BENCH_READER_IDS"), common.get_request)
end

function request()
  return common.random_item(requests)
end
