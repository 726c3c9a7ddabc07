"""Jobs run by the background work: captions, waiting, failure and cancellation."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import av
import httpx
import pytest
from fastapi import FastAPI

from tests.tasks.conftest import MediaFiles
from tests.tasks.support import Caller, fetch, upload_video, wait_for_job, wait_for_video
from tests.tasks.test_recovery import stored_video
from vidlib.uploads.transcripts import parse_srt, parse_vtt

CREATE = "/api/v1/jobs/create"
TEXT = (
    "Welcome to the harbour. The boats come in at dawn, heavy with the night's catch! "
    "Gulls follow them all the way to the quay, where the market is already busy. "
    "By noon, everything is sold? Then the town sleeps."
)


def demux_cues(data: bytes, fmt: str, tmp_path: Path) -> list[tuple[float, float, str]]:
    """(start, end, text) of each cue, read by FFmpeg's own subtitle demuxer."""
    path = tmp_path / f"{uuid.uuid4().hex}.{fmt}"
    path.write_bytes(data)
    cues = []
    with av.open(str(path), format="webvtt" if fmt == "vtt" else "srt") as container:
        stream = container.streams[0]
        for packet in container.demux(stream):
            if packet.size == 0 or packet.pts is None or packet.duration is None:
                continue
            start = float(packet.pts * packet.time_base)
            cues.append(
                (start, start + float(packet.duration * packet.time_base), bytes(packet).decode())
            )
    return cues


async def ready_upload(client: httpx.AsyncClient, caller: Caller, path: Path) -> dict[str, Any]:
    body = await upload_video(client, caller, path)
    video = await wait_for_video(client, caller, body["video"]["id"])
    assert video["status"] == "ready"
    return video


async def files_of(client: httpx.AsyncClient, job: dict[str, Any]) -> dict[str, bytes]:
    out = {}
    for name, entry in job["result"]["files"].items():
        resp = await fetch(client, entry["url"])
        assert resp.status_code == 200, entry
        out[name] = resp.content
    return out


async def test_plain_text_becomes_paced_readable_captions(
    client: httpx.AsyncClient, caller: Caller, media: MediaFiles, tmp_path: Path
) -> None:
    video = await ready_upload(client, caller, media.mp4)
    resp = await client.post(
        CREATE, json={"s3_video_id": video["id"], "transcript_text": TEXT}, headers=caller.headers
    )
    job = await wait_for_job(client, caller, resp.json()["id"])
    assert job["status"] == "succeeded", job
    assert job["progress"] == 1
    assert job["result"]["transcript_format"] == "txt"
    files = await files_of(client, job)
    duration = video["duration"]

    vtt_text = files["vtt"].decode()
    srt_text = files["srt"].decode()
    assert len(parse_vtt(vtt_text)) == len(parse_srt(srt_text)) == job["result"]["cues"]
    vtt = demux_cues(files["vtt"], "vtt", tmp_path)
    srt = demux_cues(files["srt"], "srt", tmp_path)
    assert len(vtt) == len(srt) == job["result"]["cues"] > 1
    for (start, end, text), (s_start, s_end, s_text) in zip(vtt, srt, strict=True):
        assert 0 <= start < end <= duration + 1e-6
        assert (start, end) == pytest.approx((s_start, s_end), abs=1e-3)
        lines = text.split("\n")
        assert len(lines) <= 2, text
        assert all(len(line) <= 42 for line in lines), text
        assert s_text.strip() == text.strip()
    # Back to back over the whole video, each cue's time in proportion to its length.
    assert vtt[0][0] == 0
    assert vtt[-1][1] == pytest.approx(duration, abs=0.002)
    for (_, end, _), (start, _, _) in itertools.pairwise(vtt):
        assert start == pytest.approx(end, abs=0.002)
    rate = [(e - s) / len(t.replace("\n", "")) for s, e, t in vtt]
    assert max(rate) / min(rate) < 1.3
    assert " ".join(t.replace("\n", " ") for _, _, t in vtt).split() == TEXT.split()


async def test_timed_transcripts_keep_their_timings(
    client: httpx.AsyncClient, caller: Caller, media: MediaFiles, tmp_path: Path
) -> None:
    video = await ready_upload(client, caller, media.webm)
    srt = (
        "1\n00:00:00,250 --> 00:00:01,000\n<i>First</i> line\n\n"
        "2\n00:00:01,500 --> 00:00:09,000\nRuns past the end\n\n"
        "3\n00:00:05,000 --> 00:00:06,000\nAfter the end\n"
    )
    vtt = "WEBVTT\n\nNOTE a comment\n\nintro\n00:00.100 --> 00:00.900\nSalt &amp; pepper\n"
    jobs = []
    for text in (srt, vtt):
        resp = await client.post(
            CREATE,
            json={"s3_video_id": video["id"], "transcript_text": text},
            headers=caller.headers,
        )
        assert resp.status_code == 201, resp.text
        jobs.append(await wait_for_job(client, caller, resp.json()["id"]))
    from_srt, from_vtt = jobs
    assert from_srt["status"] == "succeeded", from_srt
    cues = demux_cues((await files_of(client, from_srt))["vtt"], "vtt", tmp_path)
    assert [(round(s, 3), round(e, 3), t) for s, e, t in cues] == [
        (0.25, 1.0, "First line"),
        (1.5, round(video["duration"], 3), "Runs past the end"),
    ]
    assert from_vtt["result"]["cues"] == 1
    files = await files_of(client, from_vtt)
    assert "Salt &amp; pepper" in files["vtt"].decode()
    assert "Salt & pepper" in files["srt"].decode()


async def test_a_job_waits_for_its_video_to_be_processed(
    app: FastAPI, client: httpx.AsyncClient, caller: Caller, media: MediaFiles
) -> None:
    # Stored but not queued: only the sweeper will process it, a couple of seconds on.
    video_id = await stored_video(
        app.state.sessionmaker, app.state.store, caller.id, media.mp4, age=timedelta(0)
    )
    resp = await client.post(
        CREATE,
        json={"s3_video_id": str(video_id), "transcript_text": "Short."},
        headers=caller.headers,
    )
    await asyncio.sleep(0.3)
    waiting = (await client.get(f"/api/v1/jobs/{resp.json()['id']}", headers=caller.headers)).json()
    assert (waiting["status"], waiting["attempts"]) == ("queued", 0)
    job = await wait_for_job(client, caller, resp.json()["id"])
    assert (job["status"], job["attempts"]) == ("succeeded", 1)
    assert job["result"]["duration"] == pytest.approx(2.0, abs=0.1)


async def test_a_job_on_a_failed_video_fails(
    client: httpx.AsyncClient, caller: Caller, media: MediaFiles
) -> None:
    body = await upload_video(client, caller, media.corrupt, "broken.mp4")
    resp = await client.post(
        CREATE, json={"video_upload_id": body["upload_id"]}, headers=caller.headers
    )
    job = await wait_for_job(client, caller, resp.json()["id"])
    assert job["status"] == "failed"
    assert job["error"] == "The video could not be processed: The file is not a readable video."
    assert job["result"] is None


async def test_cancelling_a_running_job_stops_it(
    app: FastAPI, client: httpx.AsyncClient, caller: Caller, media: MediaFiles
) -> None:
    video = await ready_upload(client, caller, media.mp4)
    resp = await client.post(
        CREATE,
        json={"s3_video_id": video["id"], "kind": "slow", "options": {"steps": 40}},
        headers=caller.headers,
    )
    job_id = resp.json()["id"]
    running = await wait_for_job(client, caller, job_id, until={"running"})
    while running["progress"] == 0:
        await asyncio.sleep(0.05)
        running = (await client.get(f"/api/v1/jobs/{job_id}", headers=caller.headers)).json()
    cancelled = await client.post(f"/api/v1/jobs/{job_id}/cancel", headers=caller.headers)
    assert cancelled.status_code == 200
    stopped_at = cancelled.json()["progress"]
    await asyncio.sleep(0.5)
    later = (await client.get(f"/api/v1/jobs/{job_id}", headers=caller.headers)).json()
    assert later["status"] == "cancelled"
    assert later["progress"] == stopped_at
    assert later["result"] is None
    assert [i.key async for i in app.state.store.list(f"uploads/users/{caller.id}/slow/")] == []
