-- get: GET one of the 1000 seeded tasks, chosen at random.
local common = require("common")

setup = common.setup
response = common.response
done = common.done
common.random_seeded_task(common.get_request)
