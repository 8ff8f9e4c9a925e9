from conftest import body


async def test_create_then_get(api, user_id):
    task = await api.create(user_id, "hello")
    response = await api.request("GET", f"/api/{user_id}/tasks/{task['id']}", user=user_id)
    assert response.code == 200
    assert body(response) == task
