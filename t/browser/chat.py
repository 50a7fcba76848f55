#!/usr/bin/python3
# Two headless Chromium pages in one room of the chat page: each sees the
# other's presence and messages.  Prints TAP; run by t/43-chat-browser.t
# with the port of an nginx serving conf-examples/chat.conf.

import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

port = sys.argv[1]
url = "http://127.0.0.1:%s/index.html" % port
n = 0
failed = 0


def ok(cond, name):
    global n, failed
    n += 1
    if not cond:
        failed += 1
    print("%s %d - %s" % ("ok" if cond else "not ok", n, name), flush=True)


def wait(cond, secs=15):
    end = time.time() + secs
    while time.time() < end:
        try:
            if cond():
                return True
        except Exception:
            pass
        time.sleep(0.1)
    return False


def browser():
    opts = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu",
              "--disable-dev-shm-usage", "--no-first-run"):
        opts.add_argument(a)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"),
                            options=opts)


def join(d, name, room):
    d.get(url)
    d.find_element(By.ID, "name").send_keys(name)
    room_box = d.find_element(By.ID, "room")
    room_box.clear()
    room_box.send_keys(room)
    d.find_element(By.ID, "connect").click()


def say(d, text):
    box = d.find_element(By.ID, "text")
    wait(lambda: box.is_enabled())
    box.send_keys(text)
    d.execute_script("document.getElementById('send')"
                     ".dispatchEvent(new Event('submit', {cancelable: true}))")


def log(d):
    return d.find_element(By.ID, "log").text


def members(d):
    return [li.text for li in
            d.find_elements(By.CSS_SELECTOR, "#members li")]


a = b = None
try:
    a = browser()
    b = browser()
    join(a, "alice", "garden")
    ok(wait(lambda: "in garden as alice" in
            a.find_element(By.ID, "state").text), "alice's page joins the room")
    join(b, "bob", "garden")
    ok(wait(lambda: "in garden as bob" in
            b.find_element(By.ID, "state").text), "bob's page joins it too")
    ok(wait(lambda: members(a) == ["alice", "bob"]),
       "alice's page lists both members")
    ok(wait(lambda: members(b) == ["alice", "bob"]),
       "bob's page lists both members")
    ok(wait(lambda: "bob joined" in log(a)), "alice sees bob join")
    say(a, "hello from alice")
    say(b, "hi alice, bob here")
    ok(wait(lambda: "hello from alice" in log(b)),
       "bob's page shows alice's message")
    ok(wait(lambda: "hi alice, bob here" in log(a)),
       "alice's page shows bob's message")
    ok(wait(lambda: log(a).index("hello from alice")
            < log(a).index("hi alice, bob here")
            and log(b).index("hello from alice")
            < log(b).index("hi alice, bob here")),
       "both pages show them in the same order")
    b.quit()
    b = None
    ok(wait(lambda: members(a) == ["alice"]), "bob leaves: alice is alone")
    ok(wait(lambda: "bob left" in log(a)), "alice sees bob leave")
finally:
    for d in (a, b):
        if d:
            d.quit()

print("1..%d" % n)
sys.exit(1 if failed else 0)
