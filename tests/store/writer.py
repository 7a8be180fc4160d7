"""A second process writing to a store: `python writer.py URL CONVERSATION_ID SENDER_ID N TAG`.

Adds N messages (half of them sent twice with the same client_msg_id, concurrently) and prints
one line per message: `seq client_msg_id created`.
"""
from __future__ import annotations

import asyncio
import sys

from chatd.store.urls import store_from_url


async def main(url: str, cid: str, sender: str, n: int, tag: str) -> None:
    """Write, then print what the store answered."""
    store = store_from_url(url, pool_size=4)
    await store.open()
    try:
        conv: int | str = int(cid) if cid.isdecimal() else cid
        uid: int | str = int(sender) if sender.isdecimal() else sender

        async def one(i: int) -> list[str]:
            cmid = f"{tag}-{i}"
            sends = 2 if i % 2 == 0 else 1  # a resend racing the original
            results = await asyncio.gather(*(store.add_message(conv, uid, f"{tag} {i}", "user", cmid)
                                             for _ in range(sends)))
            return [f"{r.message.seq} {cmid} {int(r.created)}" for r in results]

        for lines in await asyncio.gather(*(one(i) for i in range(n))):
            print("\n".join(lines))
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]))
