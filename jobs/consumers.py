"""Websockets that push job updates; each sends the current state on connect to catch up."""

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from jobs.events import job_group, user_group
from jobs.fragments import job_row_html, job_status_html
from jobs.models import Job

# Close codes in the application range; a refused socket never reaches accept().
NOT_FOUND = 4404
RECENT_ROWS = 50


class _ForwardingConsumer(AsyncWebsocketConsumer):
    group = ""

    async def disconnect(self, code):
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def job_state(self, event):
        await self.send(text_data=event["html"])


class JobConsumer(_ForwardingConsumer):
    """One job's status block, for its page. Others' jobs do not exist here."""

    async def connect(self):
        job_id = self.scope["url_route"]["kwargs"]["job_id"]
        if not await database_sync_to_async(_visible_job_exists)(self.scope["user"], job_id):
            await self.close(code=NOT_FOUND)
            return
        self.group = job_group(job_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send(text_data=await database_sync_to_async(_status_html)(job_id))


class JobListConsumer(_ForwardingConsumer):
    """The rows of the signed-in user's job list."""

    async def connect(self):
        user = self.scope["user"]
        if not user.is_authenticated:
            await self.close(code=NOT_FOUND)
            return
        self.group = user_group(user.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send(text_data=await database_sync_to_async(_recent_rows_html)(user))


def _visible_job_exists(user, job_id) -> bool:
    return Job.objects.for_user(user).filter(pk=job_id).exists()


def _status_html(job_id) -> str:
    return job_status_html(Job.objects.get(pk=job_id))


def _recent_rows_html(user) -> str:
    jobs = Job.objects.filter(owner=user).order_by("-created_at")[:RECENT_ROWS]
    return "".join(job_row_html(job) for job in jobs)
