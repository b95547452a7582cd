# Minimal Python Sequence for the STH 0.18.7 python runner (bundled in
# @scramjet/python-runner). Yields "py N" every 200 ms; args[0] = count
# (0/missing = until killed).
import asyncio

from scramjet.streams import Stream


async def ticks(count):
    n = 0
    while not count or n < count:
        n += 1
        print(f"stdout py {n}", flush=True)
        yield f"py {n}\n"
        await asyncio.sleep(0.2)


def run(context, input, *args):
    count = int(args[0]) if args else 0
    return Stream.read_from(ticks(count))
