-- mixed: 50% get, 20% list, 10% create, 10% update, 10% toggle, in random order.
local common = require("common")
local operations

setup = common.setup
response = common.response
done = common.done

function init()
  common.init()
  local ids = common.read_lines("BENCH_READER_IDS")
  local gets = common.requests_for_ids(ids, common.get_request)
  local updates = common.requests_for_ids(ids, common.update_request)
  local toggles = common.requests_for_ids(ids, common.toggle_request)
  local list = common.list_request()
  local creates = common.create_requests()
  local function get() return common.random_item(gets) end
  local function list_all() return list end
  local function create() return common.random_item(creates) end
  local function update() return common.random_item(updates) end
  local function toggle() return common.random_item(toggles) end
  operations = { get, get, get, get, get, list_all, list_all, create, update, toggle }
end

function request()
  return common.random_item(operations)()
end
