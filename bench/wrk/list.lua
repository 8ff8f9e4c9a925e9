-- list: GET all of the reader's 1000 tasks.
local common = require("common")
local list

setup = common.setup
response = common.response
done = common.done

function init()
  common.init()
  list = common.list_request()
end

function request()
  return list
end
