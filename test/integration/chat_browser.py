"""troupe-chat's page in a real browser: Debian's headless Chromium, driven
through the DevTools protocol (over python3-websockets, nothing else).

Two pages open http://HTTP/ and are used as a person uses them, through
Chromium's own keyboard and mouse input: alice types and presses Enter, bob
types and clicks Connect and Send. They talk in #troupe; a raw TCP IRC client
in the same channel hears their lines and says its own, which both pages
must show. Every check on a page reads its DOM back.

    chat_browser.py HTTP_HOST:PORT IRC_HOST:PORT [--screenshot FILE.png]

Exit 0: every line reached every other participant. Otherwise a message
says what was missing. Chromium and its profile directory are removed in
every case.
"""
import argparse, asyncio, base64, ctypes, json, os, queue, select, shutil, signal, subprocess, sys, tempfile, threading, time

CHROMIUM = "/usr/bin/chromium"
START_S = 60.0  # Chromium's first start on a busy 2-core machine can be slow
WAIT_S = 30.0   # any one thing a page or the raw client waits for
CHAN = "#troupe"
WIDTH, HEIGHT = 1000, 700


class Failed(Exception):
    pass


# ---- Chromium ----

def start_chromium(profile):
    """Starts Chromium; returns (process, queue). A thread copies its stderr
    to the profile's chromium.log and puts the DevTools address on the queue
    when Chromium prints it ("DevTools listening on ws://...")."""
    log = open(os.path.join(profile, "chromium.log"), "wb")

    def child():
        # Chromium dies with us even if we are killed before `finally` runs.
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG

    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
    args = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", "--no-default-browser-check", "--disable-extensions",
            "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
            f"--user-data-dir={profile}", f"--window-size={WIDTH},{HEIGHT}", "about:blank"]
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.PIPE,
                            start_new_session=True, preexec_fn=child)
    found = queue.Queue()

    def copy_stderr():
        with log:
            for raw in proc.stderr:  # until Chromium closes it (it exits)
                log.write(raw)
                line = raw.decode(errors="replace")
                if line.startswith("DevTools listening on "):
                    found.put(line.split(" on ", 1)[1].strip())
        found.put(None)

    threading.Thread(target=copy_stderr, daemon=True).start()
    return proc, found


async def devtools_url(proc, found):
    """Waits (bounded) for the address Chromium prints once it listens."""
    try:
        url = await asyncio.get_running_loop().run_in_executor(None, found.get, True, START_S)
    except queue.Empty:
        raise Failed(f"chromium did not listen within {START_S:.0f} s") from None
    if url is None:
        raise Failed(f"chromium exited with status {proc.wait()} before listening")
    return url


def group_members(pgid):
    """Processes of the group that are not yet zombies."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            pids.append(int(pid))
    return pids


def stop_chromium(proc):
    """Ends Chromium and its helpers (its own process group) and waits, up
    to a bound, for each to exit (their pidfds say when), so the profile can
    be removed."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    fds = []
    for pid in group_members(proc.pid):
        try:
            fds.append(os.pidfd_open(pid))
        except OSError:
            pass  # gone already
    waiter = select.poll()
    for fd in fds:
        waiter.register(fd, select.POLLIN)
    end, left = time.monotonic() + 5, len(fds)
    while left > 0 and time.monotonic() < end:
        for fd, _ in waiter.poll(max(end - time.monotonic(), 0) * 1000):
            waiter.unregister(fd)
            left -= 1
    for fd in fds:
        os.close(fd)
    if proc.poll() is None:
        proc.wait()


class DevTools:
    """One browser-level DevTools connection; pages are flattened sessions."""

    def __init__(self, ws):
        self.ws, self.next_id, self.waiting, self.events = ws, 0, {}, {}
        self.reader = asyncio.create_task(self.read())

    def event(self, method, session):
        """A future for the next `method` event of `session`: ask before
        the command that causes it."""
        fut = self.events[(session, method)] = asyncio.get_running_loop().create_future()
        return fut

    async def read(self):
        try:
            async for raw in self.ws:
                msg = json.loads(raw)
                if "method" in msg:
                    fut = self.events.pop((msg.get("sessionId"), msg["method"]), None)
                    if fut is not None and not fut.done():
                        fut.set_result(msg)
                    continue
                fut = self.waiting.pop(msg.get("id"), None)
                if fut is not None and not fut.done():
                    fut.set_result(msg)
        finally:
            for fut in [*self.waiting.values(), *self.events.values()]:
                if not fut.done():
                    fut.set_exception(Failed("the DevTools connection closed"))

    async def call(self, method, params=None, session=None, timeout=WAIT_S):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session is not None:
            msg["sessionId"] = session
        fut = self.waiting[self.next_id] = asyncio.get_running_loop().create_future()
        await self.ws.send(json.dumps(msg))
        try:
            reply = await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            raise Failed(f"no reply to {method} in {timeout:.0f} s") from None
        if "error" in reply:
            raise Failed(f"{method}: {reply['error']}")
        return reply["result"]


class Page:
    def __init__(self, dt, name, clicks):
        self.dt, self.name, self.clicks, self.session = dt, name, clicks, None

    async def open(self, url):
        target = await self.dt.call("Target.createTarget", {"url": "about:blank", "newWindow": True})
        attached = await self.dt.call("Target.attachToTarget",
                                      {"targetId": target["targetId"], "flatten": True})
        self.session = attached["sessionId"]
        # Both windows act focused, as if each had its own screen.
        await self.call("Emulation.setFocusEmulationEnabled", {"enabled": True})
        await self.call("Emulation.setDeviceMetricsOverride",
                        {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False})
        await self.call("Page.enable")
        loaded = self.dt.event("Page.loadEventFired", self.session)
        await self.call("Page.navigate", {"url": url})
        try:
            await asyncio.wait_for(loaded, WAIT_S)
        except asyncio.TimeoutError:
            raise Failed(f"{self.name}: the page did not load in {WAIT_S:.0f} s") from None
        await self.wait_for("the page's log", "!!document.getElementById('log')")

    def call(self, method, params=None, timeout=WAIT_S):
        return self.dt.call(method, params, session=self.session, timeout=timeout)

    async def wait_for(self, what, cond):
        """Waits, in the page, until the JS expression cond is true: checked
        at once and again at every change to the DOM (a MutationObserver),
        for at most WAIT_S."""
        expr = """new Promise(done => {
            const check = () => { try { if (%s) { finish(true); } } catch (e) {} };
            const obs = new MutationObserver(check);
            const timer = setTimeout(() => finish(false), %d);
            function finish(ok) { obs.disconnect(); clearTimeout(timer); done(ok); }
            obs.observe(document, {subtree: true, childList: true, attributes: true, characterData: true});
            check();
        })""" % (cond, int(WAIT_S * 1000))
        if not await self.js(expr, await_promise=True):
            raise Failed(f"timed out after {WAIT_S:.0f} s waiting for {self.name}: {what}")

    async def js(self, expr, await_promise=False):
        r = await self.call("Runtime.evaluate", {"expression": expr, "returnByValue": True,
                                                 "awaitPromise": await_promise}, WAIT_S + 5)
        if "exceptionDetails" in r:
            raise Failed(f"{self.name}: {expr}: {r['exceptionDetails'].get('text')}")
        return r["result"].get("value")

    async def fill(self, elem_id, text):
        """Focus the field, select what is in it and type over it: the
        browser's own input path, as a person's keyboard."""
        await self.js(f"(e => {{ e.focus(); e.select(); }})(document.getElementById('{elem_id}'))")
        await self.call("Input.insertText", {"text": text})

    async def press_enter(self):
        for kind in ("keyDown", "keyUp"):
            await self.call("Input.dispatchKeyEvent",
                            {"type": kind, "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13,
                             "nativeVirtualKeyCode": 13, **({"text": "\r"} if kind == "keyDown" else {})})

    async def click(self, elem_id):
        """A left click in the middle of the element, as a mouse makes it."""
        box = await self.js(f"(r => [r.x + r.width / 2, r.y + r.height / 2])"
                            f"(document.getElementById('{elem_id}').getBoundingClientRect())")
        for kind in ("mousePressed", "mouseReleased"):
            await self.call("Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1],
                                                         "button": "left", "clickCount": 1})

    async def submit(self, button_id):
        """This page's user presses Enter, or clicks the form's button."""
        if self.clicks:
            await self.click(button_id)
        else:
            await self.press_enter()

    ROWS = "[...document.querySelectorAll('#log > div')].map(d => d.textContent)"
    MEMBERS = "[...document.querySelectorAll('#members li')].map(li => li.textContent)"

    def log_rows(self):
        return self.js(self.ROWS)

    async def members(self):
        return await self.js(self.MEMBERS)

    async def sees(self, row):
        await self.wait_for(f"the page to show {row!r}", f"{self.ROWS}.includes({json.dumps(row)})")

    async def connect(self, nick):
        await self.fill("chan", CHAN)
        await self.fill("nick", nick)
        await self.submit("go")
        await self.wait_for(f"'connected as {nick}'", "document.getElementById('status').textContent === %s"
                            % json.dumps("connected as " + nick))
        await self.wait_for("the message box to open", "!document.getElementById('text').disabled")

    async def say(self, text):
        await self.fill("text", text)
        await self.submit("send")


# ---- the raw IRC client ----

class Irc:
    def __init__(self, reader, writer, nick):
        self.r, self.w, self.nick, self.lines = reader, writer, nick, []

    @classmethod
    async def login(cls, addr, nick):
        host, port = addr.rsplit(":", 1)
        r, w = await asyncio.wait_for(asyncio.open_connection(host, int(port)), WAIT_S)
        c = cls(r, w, nick)
        await c.send(f"NICK {nick}", f"USER {nick} 0 * :{nick} on raw TCP")
        await c.expect(f" 001 {nick} ")
        await c.send(f"JOIN {CHAN}")
        await c.expect(f" 366 {nick} ")
        return c

    async def send(self, *lines):
        self.w.write("".join(l + "\r\n" for l in lines).encode())
        await self.w.drain()

    async def expect(self, want):
        end = time.monotonic() + WAIT_S
        while True:
            for line in self.lines:
                if want in line:
                    return line
            left = end - time.monotonic()
            try:
                raw = await asyncio.wait_for(self.r.readline(), max(left, 0))
            except asyncio.TimeoutError:
                raise Failed(f"the raw IRC client got no line with {want!r} in {WAIT_S:.0f} s") from None
            if not raw:
                raise Failed(f"the server closed the raw IRC client before {want!r}")
            line = raw.decode(errors="replace").rstrip("\r\n")
            if line.startswith("PING"):
                await self.send("PONG" + line[4:])
            self.lines.append(line)

    def close(self):
        self.w.close()


# ---- the conversation ----

async def converse(http, irc, screenshot):
    import websockets  # Debian's python3-websockets

    profile = tempfile.mkdtemp(prefix="troupe-chromium-")
    proc, found = start_chromium(profile)
    t0 = time.monotonic()
    raw = None
    try:
        url = await devtools_url(proc, found)
        async with websockets.connect(url, max_size=None, ping_interval=None) as ws:
            dt = DevTools(ws)
            print(f"chromium: DevTools up after {time.monotonic() - t0:.1f} s", flush=True)
            raw = await Irc.login(irc, "carol")
            # alice presses Enter, bob clicks the buttons.
            alice, bob = Page(dt, "alice", clicks=False), Page(dt, "bob", clicks=True)
            await alice.open(f"http://{http}/")
            await bob.open(f"http://{http}/")
            await alice.connect("alice")
            await bob.connect("bob")
            await raw.expect(f":alice!alice@127.0.0.1 JOIN {CHAN}")
            await raw.expect(f":bob!bob@127.0.0.1 JOIN {CHAN}")
            for page in (alice, bob):
                await page.wait_for("the member list to be alice, bob, carol",
                                    f"JSON.stringify({Page.MEMBERS}.sort()) === "
                                    f"'{json.dumps(['alice', 'bob', 'carol'], separators=(',', ':'))}'")

            pages = {"alice": alice, "bob": bob}
            script = [
                ("alice", "hi bob! this is the troupe-chat page in Chromium"),
                ("bob", "hello alice, I'm on a second page, same channel"),
                ("carol", "and I'm a plain IRC client over TCP: hi both"),
                ("alice", "one line per WebSocket frame, IRC all the way down"),
                ("bob", "carol, your lines show up here just like alice's"),
                ("carol", "same here: <alice> and <bob> are in my terminal"),
            ]
            for who, text in script:
                row = f"<{who}> {text}"
                if who == "carol":
                    await raw.send(f"PRIVMSG {CHAN} :{text}")
                else:
                    await pages[who].say(text)
                    await raw.expect(f":{who}!{who}@127.0.0.1 PRIVMSG {CHAN} :{text}")
                for name, page in pages.items():
                    await page.sees(row)  # the sender's page shows its own line at once
                print(f"everyone saw {row}", flush=True)

            # Each page holds the whole conversation, in the order it was said.
            for page in (alice, bob):
                rows = [r for r in await page.log_rows() if r.startswith("<")]
                want = [f"<{who}> {text}" for who, text in script]
                if rows != want:
                    raise Failed(f"{page.name}'s page shows {rows}, not {want}")
            print(f"conversation done after {time.monotonic() - t0:.1f} s", flush=True)

            if screenshot:
                await alice.js("document.activeElement && document.activeElement.blur()")
                await alice.call("Page.bringToFront")
                shot = await alice.call("Page.captureScreenshot", {"format": "png"})
                with open(screenshot, "wb") as f:
                    f.write(base64.b64decode(shot["data"]))
                print(f"screenshot: {screenshot}", flush=True)
            try:
                await dt.call("Browser.close", timeout=5)
            except Failed:
                pass  # stop_chromium below ends it anyway
    except Failed:
        with open(os.path.join(profile, "chromium.log"), errors="replace") as f:
            tail = f.read()[-2000:]
        if tail:
            print("chromium's output (last 2000 characters):\n" + tail, file=sys.stderr)
        raise
    finally:
        if raw is not None:
            raw.close()
        stop_chromium(proc)
        shutil.rmtree(profile, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("http", help="troupe-chat's HTTP address, HOST:PORT")
    ap.add_argument("irc", help="its IRC address, HOST:PORT")
    ap.add_argument("--screenshot", metavar="FILE", help="a PNG of alice's page at the end")
    a = ap.parse_args()
    # `timeout` sends SIGTERM: unwind through the finally blocks.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("chat_browser.py: terminated"))
    if not os.access(CHROMIUM, os.X_OK):
        sys.exit(f"{CHROMIUM} is missing (Debian package chromium)")
    try:
        asyncio.run(converse(a.http, a.irc, a.screenshot))
    except Failed as e:
        sys.exit(f"chat_browser.py: FAILED: {e}")
    print("chat_browser.py: ok")


if __name__ == "__main__":
    main()
