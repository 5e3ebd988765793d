#!/usr/bin/env python3
"""Bounded flood of POST /v1/callback against a local receiver, to see load shedding.

Usage: scripts/flood.py [--url http://127.0.0.1:8080/v1/callback] [--requests 2000] [--clients 64]
                        [--token TOKEN] [--slow N]

Sends --requests callbacks from --clients keep-alive connections (plus --slow connections that
dribble headers a byte at a time) and prints how many were stored (200) and shed (429), and the
latency of the 429s. Only for 127.0.0.1: it refuses other hosts. Standard library only.
"""
import argparse
import asyncio
import json
import statistics
import time
import urllib.parse


async def one_client(host, port, path, token, counter, total, results):
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while True:
            n = counter[0]
            if n >= total:
                return
            counter[0] += 1
            body = json.dumps({"callback_type": "AUTH", "callback_code": "AUTH_SUCCESS",
                               "record": f"flood-{n % 50}", "seq": n}).encode()
            head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n")
            if token:
                head += f"Authorization: Bearer {token}\r\n"
            started = time.perf_counter()
            writer.write(head.encode() + b"\r\n" + body)
            await writer.drain()
            status_line = await reader.readline()
            status = int(status_line.split()[1])
            length, retry_after, close = 0, None, False
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.decode().partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "retry-after":
                    retry_after = value.strip()
                elif name == "connection" and value.strip().lower() == "close":
                    close = True
            await reader.readexactly(length)
            results.append((status, time.perf_counter() - started, retry_after))
            if close:
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
    finally:
        writer.close()


async def slow_client(host, port):
    """Sends a request head one byte every 100 ms until the server hangs up; returns when."""
    reader, writer = await asyncio.open_connection(host, port)
    started = time.perf_counter()
    head = f"POST /v1/callback HTTP/1.1\r\nHost: {host}\r\nX-Pad: {'a' * 500}\r\n".encode()
    try:
        for i in range(len(head)):
            writer.write(head[i:i + 1])
            await writer.drain()
            await asyncio.sleep(0.1)
            if reader.at_eof():
                break
        await asyncio.wait_for(reader.read(), timeout=30)
    except (ConnectionError, asyncio.TimeoutError):
        pass
    return time.perf_counter() - started


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", default="http://127.0.0.1:8080/v1/callback")
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--token")
    p.add_argument("--slow", type=int, default=0)
    args = p.parse_args()
    url = urllib.parse.urlsplit(args.url)
    if url.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("flood.py targets a local receiver only")
    results, counter = [], [0]
    slow = [asyncio.create_task(slow_client(url.hostname, url.port)) for _ in range(args.slow)]
    started = time.perf_counter()
    await asyncio.gather(*(one_client(url.hostname, url.port, url.path, args.token, counter,
                                      args.requests, results) for _ in range(args.clients)))
    elapsed = time.perf_counter() - started
    slow_times = [t for t in await asyncio.gather(*slow) if t is not None]
    by_status = {}
    for status, _, _ in results:
        by_status[status] = by_status.get(status, 0) + 1
    shed = sorted(t for s, t, _ in results if s == 429)
    ok = sorted(t for s, t, _ in results if s == 200)
    missing_retry_after = sum(1 for s, _, r in results if s == 429 and r is None)
    print(f"{len(results)} requests from {args.clients} clients in {elapsed:.2f} s: {by_status}")
    if shed:
        print(f"429 latency ms: p50 {1000 * statistics.median(shed):.1f} "
              f"p99 {1000 * shed[int(len(shed) * 0.99) - 1]:.1f} max {1000 * shed[-1]:.1f}; "
              f"without Retry-After: {missing_retry_after}")
    if ok:
        print(f"200 latency ms: p50 {1000 * statistics.median(ok):.1f} max {1000 * ok[-1]:.1f}")
    if slow_times:
        print(f"slow clients cut off after {min(slow_times):.1f}-{max(slow_times):.1f} s")


asyncio.run(main())
