-- toggle: PATCH /complete on a random seeded task.
local common = require("common")

setup = common.setup
response = common.response
done = common.done
common.random_seeded_task(common.toggle_request)
