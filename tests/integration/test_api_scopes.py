"""Every task route wants a token and hides other users' tasks with 404."""

import re
from uuid import uuid4

from fleet_api.routes import OPENAPI
from taskfleet.runtime.kernel import Kernel
from tests.integration.api_client import api, auth, new_user, submit


class TestScopes:
    async def test_every_route_wants_a_token_and_hides_other_users_tasks_with_404(
        self, kernel: Kernel
    ) -> None:
        owner, stranger = new_user("owner"), new_user("stranger")
        async with api(kernel) as client:
            accepted = await submit(client, owner, chat="private")
            operations = client.app[OPENAPI].operations
            # (Public routes, the sign-in code's, answer without one: test_console_routes.py.)
            user_routes = [
                op for op in operations if not op.path.startswith("/api/admin") and not op.public
            ]
            for op in user_routes:
                path = _fill(op.path, task_id=accepted["task_id"], user_id=owner, chat_id="private")
                body = {"chat_id": "x", "content": "y"} if op.body else None
                for headers in ({}, {"Authorization": "Bearer junk"}):
                    resp = await client.request(op.method, path, json=body, headers=headers)
                    assert resp.status == 401, (op.method, path)
                # The owner's objects we can name here: tasks and the user itself. (Documents
                # and cameras have their own isolation tests.)
                if not re.search(r"{(task_id|user_id)}", op.path):
                    continue
                resp = await client.request(op.method, path, json=body, headers=auth(stranger))
                assert resp.status == 404, (op.method, path, resp.status)
                assert (await resp.json())["error"]["code"] == "not_found"
            # The chat route answers an empty history for a stranger, never the owner's
            history = await (
                await client.get("/api/chats/private/messages", headers=auth(stranger))
            ).json()
            assert history["messages"] == []
            # The service scope acts for any user; the admin routes want an admin
            service = await client.get(
                f"/api/tasks/{accepted['task_id']}", headers=auth("backend", "service")
            )
            assert service.status == 200
            assert (await client.get("/api/admin/queues", headers=auth(owner))).status == 403


def _fill(path: str, **values: str) -> str:
    return re.sub(r"{(\w+)}", lambda m: values.get(m.group(1), str(uuid4())), path)
