-- update: PUT a new title and is_completed on a random seeded task.
local common = require("common")

setup = common.setup
response = common.response
done = common.done
common.random_seeded_task(common.update_request)
