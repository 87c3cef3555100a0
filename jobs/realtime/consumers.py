"""Websockets that push job updates; each sends the current state on connect to catch up.

Pushes are best effort (a full channel group drops them, Redis may be away), so each socket
also looks at the database every STEMSITE_SOCKET_RESYNC_SECONDS and sends what changed: a page
converges on the database state even when every push is lost. While pushes keep arriving the
look is skipped (they show pushes work); a lost last push is caught within two intervals.
"""

import asyncio
import contextlib
import time
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from jobs.models import Job
from jobs.realtime.events import EVENT_TYPE, job_group, user_group
from jobs.realtime.fragments import SHOWN_FIELDS, export_html, job_row_html, job_status_html, shown_version

# Close codes in the application range; a refused socket never reaches accept().
NOT_FOUND = 4404
RECENT_ROWS = 50
RECENT_EXPORTS = 20


class _ForwardingConsumer(AsyncWebsocketConsumer):
    group = ""
    resync_task: asyncio.Task | None = None
    last_push = 0.0  # time.monotonic() of the last push forwarded

    async def disconnect(self, code):
        if self.resync_task is not None:
            self.resync_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.resync_task
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def dispatch(self, message):
        """Forward pushes straight to the socket. Channels closes stale database connections before
        every handler, a hop to its one sync thread each time: with 500 sockets on a job that was
        most of the cost of one push (bench/push.py). Forwarding reads no database."""
        if message["type"] == EVENT_TYPE:
            await self.job_state(message)
        else:
            await super().dispatch(message)

    async def job_state(self, event):
        self.last_push = time.monotonic()
        await self.send(text_data=event["html"])

    async def join_and_catch_up(self, group: str, page_shows=None) -> None:
        """Join the group, accept, send what changed since what the page shows (`page_shows`, as
        `snapshot` takes it; everything when None), and keep checking the database."""
        self.group = group
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        shown, html, finished = await database_sync_to_async(self.snapshot)(page_shows)
        if html or page_shows is None:
            await self.send(text_data=html)
        interval = settings.STEMSITE_SOCKET_RESYNC_SECONDS
        if interval > 0 and not finished:
            self.resync_task = asyncio.create_task(self._resync(shown, interval))

    async def _resync(self, shown, interval: float) -> None:
        """500 sockets on a moving job re-read and re-rendered it 50 times a second, which held
        pushes back (bench/push.py); a socket that pushes reach needs no re-read."""
        while True:
            await asyncio.sleep(interval)
            if time.monotonic() - self.last_push < interval:
                continue
            shown, html, finished = await database_sync_to_async(self.snapshot)(shown)
            if html:
                await self.send(text_data=html)
            if finished:
                return

    def snapshot(self, shown) -> tuple[object, str, bool]:
        """(what is shown now, the html to send if that differs from `shown`, whether to stop)."""
        raise NotImplementedError


class JobConsumer(_ForwardingConsumer):
    """One job's status block, for its page. Others' jobs do not exist here.

    The page names the block it shows (`?shown=`, `fragments.shown_version`), so connecting sends
    the block only when the job moved on since the page was rendered."""

    async def connect(self):
        self.job_id = self.scope["url_route"]["kwargs"]["job_id"]
        if not await database_sync_to_async(_visible_job_exists)(self.scope["user"], self.job_id):
            await self.close(code=NOT_FOUND)
            return
        query = parse_qs(self.scope.get("query_string", b"").decode())
        page_shows = query.get("shown", [None])[0]
        await self.join_and_catch_up(job_group(self.job_id), (page_shows, {}) if page_shows else None)

    def snapshot(self, shown):
        """The job's block and its recent mix exports' blocks, each only when it changed."""
        job = Job.objects.filter(pk=self.job_id).first()
        if job is None:
            return shown, "", True
        exports = list(job.exports.order_by("-created_at")[:RECENT_EXPORTS])
        job_now = shown_version(job)
        exports_now = {export.pk: (export.status, export.progress) for export in exports}
        job_before, exports_before = shown or (None, {})
        parts = [job_status_html(job)] if job_now != job_before else []
        parts += [export_html(e) for e in exports if exports_before.get(e.pk) != exports_now[e.pk]]
        finished = job.is_finished and all(export.is_finished for export in exports)
        return (job_now, exports_now), "".join(parts), finished


class JobListConsumer(_ForwardingConsumer):
    """The rows of the signed-in user's job list."""

    async def connect(self):
        user = self.scope["user"]
        if not user.is_authenticated:
            await self.close(code=NOT_FOUND)
            return
        await self.join_and_catch_up(user_group(user.pk))

    def snapshot(self, shown):
        mine = Job.objects.listed().filter(owner=self.scope["user"])
        jobs = list(mine.order_by("-created_at")[:RECENT_ROWS])
        now = [(job.pk, *(getattr(job, name) for name in SHOWN_FIELDS)) for job in jobs]
        if now == shown:
            return shown, "", False
        return now, "".join(job_row_html(job) for job in jobs), False


def _visible_job_exists(user, job_id) -> bool:
    return Job.objects.for_user(user).filter(pk=job_id).exists()
