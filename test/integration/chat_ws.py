"""A browser's side of troupe-chat, as Debian's python3-websockets speaks it:
a WebSocket user (subprotocol text.ircv3.net, one IRC line per text
frame) and a plain TCP user share a channel and hear each other.

    chat_ws.py HTTP_HOST:PORT IRC_HOST:PORT      (exit 0: both lines arrived)
"""
import asyncio, sys, socket
import websockets
async def main(http, irc):
    host, port = irc.rsplit(":", 1)
    s = socket.create_connection((host, int(port)))
    s.settimeout(5)

    def wait_for(marker):  # bounded by the socket's timeout
        data = b""
        while marker not in data:
            chunk = s.recv(65536)
            if not chunk:
                raise SystemExit("tcp user: server closed before " + marker.decode())
            data += chunk

    s.sendall(b"NICK tcpuser\r\nUSER t 0 * :T\r\n")
    wait_for(b" 001 tcpuser")
    s.sendall(b"JOIN #web\r\n")
    wait_for(b" 366 tcpuser")
    async with websockets.connect(f"ws://{http}/ws", subprotocols=["text.ircv3.net"]) as ws:
        assert ws.subprotocol == "text.ircv3.net", ws.subprotocol
        await ws.send("NICK webuser"); await ws.send("USER w 0 * :W"); await ws.send("JOIN #web")
        got = []
        async def until(pred):
            while True:
                m = await asyncio.wait_for(ws.recv(), 5)
                got.append(m)
                if pred(m): return m
        await until(lambda m: " 366 webuser" in m)
        await ws.send("PRIVMSG #web :hello from the browser")
        s.sendall(b"PRIVMSG #web :hello from tcp\r\n")
        m = await until(lambda m: "PRIVMSG #web :hello from tcp" in m)
        print("WS GOT:", m)
        data = b""
        while b"hello from the browser" not in data:
            data += s.recv(65536)
        print("TCP GOT browser line")
asyncio.run(main(sys.argv[1], sys.argv[2]))
